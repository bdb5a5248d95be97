import { full, OpError, type Tensor, where, zeros } from '@lowrank/tensor';
import * as F from './functional.js';
import * as init from './init.js';
import { composite, fmtShape } from './internal.js';
import { Dropout, type LayerOptions, Linear } from './layers.js';
import { Module } from './module.js';

export interface CausalSelfAttentionOptions extends LayerOptions {
  /** Biases on c_attn and c_proj (default true). */
  bias?: boolean;
  /** Dropout on the attention weights and on the output (default 0). */
  dropout?: number;
}

/**
 * Causal multi-head self-attention, named as GPT-2/nanoGPT (`c_attn` makes q, k, v in one
 * projection, `c_proj` mixes the heads). The attention is the fused `F.scaledDotProductAttention`.
 *
 * NOTE: Hugging Face's GPT-2 stores c_attn/c_proj as `Conv1D` with weights [in, out]; these are
 * `Linear` ([out, in]), so such checkpoints load transposed.
 *
 * @example
 * const attn = new CausalSelfAttention(64, 4);
 * attn.forward(x); // x [B, T, 64] → [B, T, 64]
 */
export class CausalSelfAttention extends Module {
  /** Fused q|k|v projection, [3·nEmbd, nEmbd] (GPT-2's name). */
  readonly c_attn: Linear;
  /** Output projection back to nEmbd. */
  readonly c_proj: Linear;
  /** Dropout on the attention weights. */
  readonly attn_dropout: Dropout;
  /** Dropout on the output. */
  readonly resid_dropout: Dropout;

  constructor(
    /** Model width (input and output features). */
    readonly nEmbd: number,
    /** Number of heads (nEmbd must be divisible by it). */
    readonly nHead: number,
    options: CausalSelfAttentionOptions = {},
  ) {
    super();
    if (nEmbd % nHead !== 0) {
      throw new OpError('CausalSelfAttention', `nEmbd ${nEmbd} is not divisible by nHead ${nHead}`);
    }
    this.c_attn = this.registerModule('c_attn', new Linear(nEmbd, 3 * nEmbd, options));
    this.c_proj = this.registerModule('c_proj', new Linear(nEmbd, nEmbd, options));
    const gen = { generator: options.generator };
    this.attn_dropout = this.registerModule('attn_dropout', new Dropout(options.dropout ?? 0, gen));
    this.resid_dropout = this.registerModule('resid_dropout', new Dropout(options.dropout ?? 0, gen));
  }

  /**
   * x [B, T, C] → [B, T, C]. `attnMask` (bool, true = may attend, broadcast to [B, nHead, T, T],
   * e.g. a padding mask [B, 1, 1, T]) is combined with the causal mask.
   */
  forward(x: Tensor, options: { attnMask?: Tensor | null } = {}): Tensor {
    if (x.rank !== 3 || x.shape[2] !== this.nEmbd) {
      throw new OpError(
        'CausalSelfAttention',
        `expected input [B, T, ${this.nEmbd}], got ${fmtShape(x.shape)}`,
      );
    }
    const [b, t, c] = x.shape;
    const nh = this.nHead;
    const hs = c / nh;
    return composite([x, ...this.parameters()], () => {
      const [q, k, v] = this.c_attn
        .forward(x) // (B, T, 3C)
        .split(c, 2)
        .map((h) => h.reshape([b, t, nh, hs]).transpose(1, 2)); // (B, nh, T, hs)
      const y = F.scaledDotProductAttention(q, k, v, {
        isCausal: true,
        attnMask: options.attnMask ?? null,
        dropoutP: this.training ? this.attn_dropout.p : 0,
        generator: this.attn_dropout.generator,
      }); // (B, nh, T, hs)
      const merged = y.transpose(1, 2).reshape([b, t, c]); // (B, T, C)
      return this.resid_dropout.forward(this.c_proj.forward(merged));
    });
  }

  override extraRepr(): string {
    return `nEmbd=${this.nEmbd}, nHead=${this.nHead}`;
  }
}

export interface MultiheadAttentionOptions extends LayerOptions {
  /** Biases on the input and output projections (default true). */
  bias?: boolean;
  /** Dropout on the attention weights (default 0). */
  dropout?: number;
  /** Inputs [N, L, E] when true; [L, N, E] (PyTorch's default) when false. */
  batchFirst?: boolean;
}

/** Options of `MultiheadAttention.forward`. */
export interface MultiheadAttentionForwardOptions {
  /**
   * PyTorch's MultiheadAttention convention — the OPPOSITE of scaledDotProductAttention's:
   * bool true = NOT allowed; float values are added. [L, S] or [N·numHeads, L, S].
   */
  attnMask?: Tensor | null;
  /** [N, S] bool, true = ignore that key (padding). */
  keyPaddingMask?: Tensor | null;
  /** Return the attention weights (default true). */
  needWeights?: boolean;
  /** Average the weights over heads (default true): [N, L, S]; else [N, numHeads, L, S]. */
  averageAttnWeights?: boolean;
  /** Mask future positions (query i attends to keys ≤ i), combined with any other mask. */
  isCausal?: boolean;
}

/**
 * PyTorch's `nn.MultiheadAttention` with its parameter names (`in_proj_weight` [3E, E],
 * `in_proj_bias`, `out_proj`), so its state dicts load as they are. Returns `[output, weights]`.
 */
export class MultiheadAttention extends Module {
  /** Stacked q, k, v projection weights, [3·embedDim, embedDim] (PyTorch's name and layout). */
  readonly in_proj_weight: Tensor;
  /** Stacked q, k, v biases, [3·embedDim], or null without bias. */
  readonly in_proj_bias: Tensor | null;
  /** Output projection. */
  readonly out_proj: Linear;
  /** embedDim / numHeads. */
  readonly headDim: number;
  /** Inputs are [N, L, E] when true, [L, N, E] when false. */
  readonly batchFirst: boolean;
  /** Dropout probability on the attention weights (training mode only). */
  readonly dropout: number;
  readonly #generator: LayerOptions['generator'];

  constructor(
    /** Model width. */
    readonly embedDim: number,
    /** Number of heads. */
    readonly numHeads: number,
    options: MultiheadAttentionOptions = {},
  ) {
    super();
    if (embedDim % numHeads !== 0) {
      throw new OpError(
        'MultiheadAttention',
        `embedDim ${embedDim} is not divisible by numHeads ${numHeads}`,
      );
    }
    this.headDim = embedDim / numHeads;
    this.batchFirst = options.batchFirst ?? false;
    this.dropout = options.dropout ?? 0;
    this.#generator = options.generator;
    const bias = options.bias ?? true;
    this.in_proj_weight = this.registerParameter(
      'in_proj_weight',
      init.xavierUniform([3 * embedDim, embedDim], options),
    );
    this.in_proj_bias = this.registerParameter(
      'in_proj_bias',
      bias ? zeros([3 * embedDim], { device: options.device }) : null,
    );
    this.out_proj = this.registerModule('out_proj', new Linear(embedDim, embedDim, options));
    if (this.out_proj.bias) init.zeros_(this.out_proj.bias);
  }

  /**
   * `torch.nn.MultiheadAttention`'s forward: attends from `query` to `key`/`value` and returns the
   * output (batch layout as `batchFirst`) and the attention weights (null with `needWeights: false`).
   */
  forward(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    options: MultiheadAttentionForwardOptions = {},
  ): [Tensor, Tensor | null] {
    const e = this.embedDim;
    const h = this.numHeads;
    const d = this.headDim;
    const unbatched = query.rank === 2;
    for (const [n, t] of [
      ['query', query],
      ['key', key],
      ['value', value],
    ] as const) {
      if (t.rank !== query.rank || t.shape[t.rank - 1] !== e || (t.rank !== 2 && t.rank !== 3)) {
        throw new OpError(
          'MultiheadAttention',
          `${n} must be [L, N, ${e}] / [N, L, ${e}] / [L, ${e}], got ${fmtShape(t.shape)}`,
        );
      }
    }
    const needWeights = options.needWeights ?? true;
    const masks = [options.attnMask, options.keyPaddingMask];
    return composite<[Tensor, Tensor | null]>([query, key, value, ...this.parameters(), ...masks], () => {
      // to [N, L, E]
      const toBatchFirst = (t: Tensor): Tensor =>
        unbatched ? t.unsqueeze(0) : this.batchFirst ? t : t.transpose(0, 1);
      const [q0, k0, v0] = [query, key, value].map(toBatchFirst);
      const n = q0.shape[0];
      const l = q0.shape[1];
      const s = k0.shape[1];
      const [wq, wk, wv] = this.in_proj_weight.split(e, 0);
      const [bq, bk, bv] = this.in_proj_bias ? this.in_proj_bias.split(e, 0) : [null, null, null];
      const heads = (t: Tensor, len: number): Tensor => t.reshape([n, len, h, d]).transpose(1, 2); // (N, h, len, d)
      const q = heads(F.linear(q0, wq, bq), l);
      const k = heads(F.linear(k0, wk, bk), s);
      const v = heads(F.linear(v0, wv, bv), s);
      // one additive float mask [N or 1, h or 1, L, S] (0 = allowed, −inf = masked)
      let mask: Tensor | null = null;
      const addMask = (m: Tensor): void => {
        mask = mask ? mask.add(m) : m;
      };
      const additive = (m: Tensor): Tensor =>
        m.dtype === 'bool' ? where(m, full(m.shape, Number.NEGATIVE_INFINITY, { device: m.device }), 0) : m;
      if (options.attnMask) {
        const m = options.attnMask;
        addMask(additive(m.rank === 3 ? m.reshape([n, h, l, s]) : m));
      }
      if (options.keyPaddingMask) addMask(additive(options.keyPaddingMask.reshape([n, 1, 1, s])));
      const attnOptions = {
        attnMask: mask,
        isCausal: options.isCausal,
        dropoutP: this.training ? this.dropout : 0,
        generator: this.#generator,
      };
      // without weights to return: the fused attention (no [N, h, L, S] scores kept)
      if (!needWeights) {
        const fused = F.scaledDotProductAttention(q, k, v, attnOptions);
        const o = this.out_proj.forward(fused.transpose(1, 2).reshape([n, l, e])); // (N, L, E)
        return [unbatched ? o.squeeze(0) : this.batchFirst ? o : o.transpose(0, 1), null];
      }
      const { output, weights } = F.attentionWithWeights(q, k, v, attnOptions);
      let out = this.out_proj.forward(output.transpose(1, 2).reshape([n, l, e])); // (N, L, E)
      out = unbatched ? out.squeeze(0) : this.batchFirst ? out : out.transpose(0, 1);
      let w = (options.averageAttnWeights ?? true) ? weights.mean(1) : weights;
      if (unbatched) w = w.squeeze(0);
      return [out, w];
    });
  }

  override extraRepr(): string {
    return `embedDim=${this.embedDim}, numHeads=${this.numHeads}, batchFirst=${this.batchFirst}`;
  }
}
