import {
  Conv1D,
  Dropout,
  Embedding,
  F,
  initializers as init,
  LayerNorm,
  Module,
  ModuleList,
} from '@lowrank/nn';
import { arange, cat, type Device, Generator, OpError, ones, type Tensor, tidy } from '@lowrank/tensor';
import { type GPT2Config, gpt2Config, innerDim } from './config.js';
import {
  lmHeadLoss,
  lmLoss,
  outputWithLabels,
  quantizedHeadError,
  quantizedTable,
  tiedLogits,
} from './lm-head.js';

/**
 * GPT-2 as in the paper (Radford et al. 2019) and nanoGPT, with Hugging Face's module names so a
 * `model.safetensors` written by `save_pretrained` loads by name:
 *
 *   transformer.wte, transformer.wpe                     token / position embeddings
 *   transformer.h.N.{ln_1, attn.c_attn, attn.c_proj,     pre-LN blocks
 *                    ln_2, mlp.c_fc, mlp.c_proj}
 *   transformer.ln_f                                     final LayerNorm
 *   lm_head                                              tied to transformer.wte (not in files)
 *
 * Every linear layer is a Conv1D (weights stored [in, out], as HF's Conv1D and the checkpoints).
 */

/** A layer mapping one tensor to one (Conv1D, or the LoRA layer that replaced it). */
interface Layer extends Module {
  forward(x: Tensor): Tensor;
}

/** Keys and values of one layer for the tokens seen so far: [B, n_head, T_past, head_dim] each. */
export interface LayerCache {
  /** Keys [B, n_head, T_past, head_dim]. */
  k: Tensor;
  /** Values [B, n_head, T_past, head_dim]. */
  v: Tensor;
}

/** What an attention layer or a block returns: its output and its updated KV cache. */
export interface CachedOutput {
  /** [B, T, C]. */
  out: Tensor;
  /** The layer's cache including this call's tokens. */
  present: LayerCache;
}
/** One `LayerCache` per block, for incremental generation. */
export type KVCache = LayerCache[];

/** Multi-head causal self-attention with a fused q|k|v projection (`c_attn`). */
export class GPT2Attention extends Module {
  /** Fused q|k|v projection (a `Conv1D`, [n_embd, 3·n_embd]); LoRA's usual target. */
  c_attn: Layer;
  /** Output projection (a `Conv1D`). */
  c_proj: Layer;
  /** Dropout on the attention weights. */
  readonly attn_dropout: Dropout;
  /** Dropout on the output. */
  readonly resid_dropout: Dropout;
  private readonly nHead: number;
  private readonly headDim: number;
  private readonly scale: number;

  constructor(
    /** The model's configuration. */
    readonly config: GPT2Config,
    layerIdx: number,
  ) {
    super();
    const d = config.n_embd;
    this.nHead = config.n_head;
    this.headDim = d / config.n_head;
    this.c_attn = this.registerModule('c_attn', new Conv1D(3 * d, d));
    this.c_proj = this.registerModule('c_proj', new Conv1D(d, d));
    this.attn_dropout = this.registerModule('attn_dropout', new Dropout(config.attn_pdrop));
    this.resid_dropout = this.registerModule('resid_dropout', new Dropout(config.resid_pdrop));
    let scale = config.scale_attn_weights ? 1 / Math.sqrt(this.headDim) : 1;
    if (config.scale_attn_by_inverse_layer_idx) scale /= layerIdx + 1;
    this.scale = scale;
  }

  /**
   * x: [B, T, C] → [B, T, C]. With `past`, the new keys/values are appended to it and the
   * updated cache is returned in `present` (the caller owns both and disposes the old one).
   * `mask`: bool [T, T_total] (true = may attend), or `'causal'` for the plain causal mask of a
   * call without a cache, which the attention kernels apply by position: they skip the blocks
   * above the diagonal and read no mask (on the H200 the bool mask took GPT-2's attention to
   * 2.5 ms a layer, against 1.4 ms causal at the same size).
   */
  forward(x: Tensor, mask: Tensor | 'causal', past?: LayerCache): CachedOutput {
    const [B, T, C] = x.shape;
    const split = (t: Tensor): Tensor => t.reshape(B, T, this.nHead, this.headDim).permute(0, 2, 1, 3); // (B, nh, T, hs)
    const [q0, k0, v0] = this.c_attn.forward(x).split(C, 2);
    // q, k, v are strided views of c_attn's output: the fused attention reads them in place
    const q = split(q0);
    if (mask === 'causal' && past && past.k.shape[2] > 0) {
      throw new OpError(
        'GPT2Attention',
        `a 'causal' mask is for calls without a cache (got ${past.k.shape[2]} cached positions): pass the bool mask [T, T_total]`,
      );
    }
    const k = past ? cat([past.k, split(k0)], 2) : split(k0);
    const v = past ? cat([past.v, split(v0)], 2) : split(v0);
    // one fused kernel (no [T, T_total] scores kept); the bool mask is [T, T_total] (bottom-right
    // aligned with a cache). HF fills masked scores with finfo.min rather than −∞: the same
    // weights wherever a row keeps a key, which every causal row does.
    const drop = this.attn_dropout;
    const y = F.scaledDotProductAttention(q, k, v, {
      attnMask: mask === 'causal' ? null : mask,
      isCausal: mask === 'causal',
      scale: this.scale,
      dropoutP: drop.training ? drop.p : 0,
      generator: drop.generator,
    }) // (B, nh, T, hs)
      .permute(0, 2, 1, 3)
      .reshape(B, T, C); // re-assemble heads side by side
    return { out: this.resid_dropout.forward(this.c_proj.forward(y)), present: { k, v } };
  }
}

/** The position-wise MLP: c_fc → activation → c_proj → dropout. */
export class GPT2MLP extends Module {
  /** n_embd → 4·n_embd projection (a `Conv1D`). */
  c_fc: Layer;
  /** 4·n_embd → n_embd projection (a `Conv1D`). */
  c_proj: Layer;
  /** Dropout on the output. */
  readonly dropout: Dropout;

  /** @param config The model's configuration. */
  constructor(readonly config: GPT2Config) {
    super();
    const inner = innerDim(config);
    this.c_fc = this.registerModule('c_fc', new Conv1D(inner, config.n_embd));
    this.c_proj = this.registerModule('c_proj', new Conv1D(config.n_embd, inner));
    this.dropout = this.registerModule('dropout', new Dropout(config.resid_pdrop));
  }

  /** x [B, T, C] → [B, T, C]. */
  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.c_proj.forward(activation(this.c_fc.forward(x), this.config)));
  }
}

function activation(x: Tensor, c: GPT2Config): Tensor {
  switch (c.activation_function) {
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      return x.gelu({ approximate: 'tanh' });
    case 'gelu':
      return x.gelu();
    case 'relu':
      return x.relu();
  }
}

/** One transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)). */
export class GPT2Block extends Module {
  /** LayerNorm before attention. */
  readonly ln_1: LayerNorm;
  /** Causal self-attention. */
  readonly attn: GPT2Attention;
  /** LayerNorm before the MLP. */
  readonly ln_2: LayerNorm;
  /** The position-wise MLP. */
  readonly mlp: GPT2MLP;

  constructor(config: GPT2Config, layerIdx: number) {
    super();
    this.ln_1 = this.registerModule('ln_1', new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon }));
    this.attn = this.registerModule('attn', new GPT2Attention(config, layerIdx));
    this.ln_2 = this.registerModule('ln_2', new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon }));
    this.mlp = this.registerModule('mlp', new GPT2MLP(config));
  }

  /** x [B, T, C] → `out` [B, T, C], and the block's updated cache in `present` (`mask`: see GPT2Attention). */
  forward(x: Tensor, mask: Tensor | 'causal', past?: LayerCache): CachedOutput {
    const a = this.attn.forward(this.ln_1.forward(x), mask, past);
    const h = x.add(a.out);
    return { out: h.add(this.mlp.forward(this.ln_2.forward(h))), present: a.present };
  }
}

/** Embeddings, blocks and the final LayerNorm (HF's `GPT2Model`, the `transformer.` prefix). */
export class GPT2Model extends Module {
  /** Token embeddings [vocab_size, n_embd] (also the output layer: weights are tied). */
  wte: Embedding;
  /** Learned position embeddings [n_positions, n_embd]. */
  wpe: Embedding;
  /** Dropout on the summed embeddings. */
  readonly drop: Dropout;
  /** The blocks (`h.0` … `h.{n_layer-1}`). */
  readonly h: ModuleList<GPT2Block>;
  /** Final LayerNorm. */
  readonly ln_f: LayerNorm;
  /** Causal mask [n_positions, n_positions]: true where key position ≤ query position. */
  readonly causalMask: Tensor;

  /** @param config The model's configuration. */
  constructor(readonly config: GPT2Config) {
    super();
    this.wte = this.registerModule('wte', new Embedding(config.vocab_size, config.n_embd));
    this.wpe = this.registerModule('wpe', new Embedding(config.n_positions, config.n_embd));
    this.drop = this.registerModule('drop', new Dropout(config.embd_pdrop));
    const blocks = Array.from({ length: config.n_layer }, (_, i) => new GPT2Block(config, i));
    this.h = this.registerModule('h', new ModuleList(blocks));
    this.ln_f = this.registerModule('ln_f', new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon }));
    const n = config.n_positions;
    this.causalMask = this.registerBuffer(
      'causal_mask',
      tidy(() => ones([n, n]).tril().bool()),
      {
        persistent: false,
      },
    );
  }

  /** ids: [B, T] int32 → hidden states [B, T, C] (and the updated cache when `past` is given). */
  forward(
    ids: Tensor,
    past?: KVCache,
  ): {
    /** Hidden states [B, T, C] after the final LayerNorm. */
    hidden: Tensor;
    /** The cache including this call's tokens. */
    present: KVCache;
  } {
    const [, T] = ids.shape;
    const pastLen = past?.[0]?.k.shape[2] ?? 0;
    if (pastLen + T > this.config.n_positions) {
      throw new OpError(
        'GPT2Model',
        `sequence length ${pastLen + T} exceeds n_positions ${this.config.n_positions}`,
      );
    }
    const pos = arange(pastLen, pastLen + T, 1, { dtype: 'int32', device: ids.device });
    let x = this.drop.forward(this.wte.forward(ids).add(this.wpe.forward(pos))); // (B, T, C)
    // rows: the T new query positions; columns: every key position so far (without a cache: the
    // kernels' own causal mask)
    const mask =
      pastLen === 0 ? 'causal' : this.causalMask.slice(0, pastLen, pastLen + T).slice(1, 0, pastLen + T);
    const present: KVCache = [];
    for (let i = 0; i < this.h.length; i++) {
      const r = this.h.at(i).forward(x, mask, past?.[i]);
      x = r.out;
      present.push(r.present);
    }
    return { hidden: this.ln_f.forward(x), present };
  }
}

/** What `GPT2LMHeadModel.forward` returns. */
export interface LMOutput {
  /**
   * [B, T, vocab] (or [B, 1, vocab] with `lastOnly`). With `labels` (and no `lastOnly`) the loss
   * is computed from the hidden states without them (`lmHeadLoss`, fused), and `logits` is a
   * getter that computes them on first read: read it inside the scope (tidy) of the forward.
   */
  logits: Tensor;
  /** Mean cross-entropy of the shifted labels (when labels were given). */
  loss?: Tensor;
  /** The updated key/value cache (when `useCache` or `past` was given). */
  present?: KVCache;
}

/** Options of `GPT2LMHeadModel.forward`. */
export interface LMForwardOptions {
  /** Labels [B, T] (int32; -100 is ignored); shifted by one inside, as in HF. */
  labels?: Tensor;
  /** Cached keys/values of earlier tokens (generation). */
  past?: KVCache;
  /** Return the cache of this call (default: only when `past` is given). */
  useCache?: boolean;
  /** Compute logits only for the last position (generation). */
  lastOnly?: boolean;
}

export { IGNORE_INDEX, lmHeadLoss, lmLoss } from './lm-head.js';

/**
 * GPT-2 with the language-modelling head (HF's `GPT2LMHeadModel`). The head is the token
 * embedding itself (weight tying): logits = ln_f(h) · wteᵀ.
 *
 * @example
 * ```ts
 * const model = new GPT2LMHeadModel(gpt2Config({ vocab_size: 65, n_positions: 128, n_embd: 64, n_layer: 2, n_head: 4 }));
 * const { logits, loss } = model.forward(ids, { labels: ids });
 * ```
 */
export class GPT2LMHeadModel extends Module {
  /** The validated configuration. */
  readonly config: GPT2Config;
  /** The body (HF's `transformer.` prefix). */
  readonly transformer: GPT2Model;
  /**
   * Where the weights came from (the directory or Hub id given to `fromPretrained`), null for a
   * model built in code; an adapter saved from it records this as `base_model_name_or_path`.
   */
  nameOrPath: string | null = null;

  /** A freshly initialised model (`initWeights(seed)`, HF's scheme); load a checkpoint to overwrite it. */
  constructor(config: Partial<GPT2Config> | GPT2Config, options: { seed?: number } = {}) {
    super();
    this.config = gpt2Config(config);
    this.transformer = this.registerModule('transformer', new GPT2Model(this.config));
    this.initWeights(options.seed ?? 0);
  }

  /**
   * Hugging Face's `_init_weights` for a model trained from scratch: embeddings and projections
   * ~ N(0, initializer_range²), every block's output projection (`c_proj`) scaled down by
   * √(2 · n_layer) (GPT-2 paper §2.3), biases 0, LayerNorm weights 1. Seeded.
   */
  initWeights(seed = 0): this {
    const generator = new Generator(seed);
    const std = this.config.initializer_range;
    for (const [name, p] of this.namedParameters()) {
      if (name.endsWith('ln_1.weight') || name.endsWith('ln_2.weight') || name.endsWith('ln_f.weight'))
        init.ones_(p);
      else if (name.endsWith('.bias')) init.zeros_(p);
      else if (name.endsWith('c_proj.weight'))
        init.normal_(p, 0, std / Math.sqrt(2 * this.config.n_layer), { generator });
      else init.normal_(p, 0, std, { generator });
    }
    return this;
  }

  /**
   * The output projection [vocab, C]: the token embedding's weight (tied). When LoRA wraps `wte`,
   * its base weight (as PEFT: the head does not see the embedding's adapter). Throws when the
   * table is 16-bit (a `dtype: 'f16'` load): the head is then `transformer.wte.weight`, a
   * `QuantizedWeight`.
   */
  get lmHeadWeight(): Tensor {
    const table = quantizedTable(this.transformer.wte);
    if (table) throw quantizedHeadError('GPT2LMHeadModel.lmHeadWeight', table, 'transformer.wte');
    const wte: Module = this.transformer.wte;
    return 'base_layer' in wte && wte.base_layer instanceof Module
      ? wte.base_layer.getParameter('weight')
      : wte.getParameter('weight');
  }

  /** The device the parameters live on. */
  get device(): Device {
    return quantizedTable(this.transformer.wte)?.device ?? this.lmHeadWeight.device;
  }

  /** Positions the model handles (`n_positions`). */
  get contextLength(): number {
    return this.config.n_positions;
  }

  /**
   * ids [B, T] int32 → logits [B, T, vocab] (and the loss with `labels`, the cache with `useCache`/`past`).
   */
  forward(ids: Tensor, options: LMForwardOptions = {}): LMOutput {
    if (ids.rank !== 2 || ids.dtype !== 'int32') {
      throw new OpError(
        'GPT2LMHeadModel',
        `input_ids must be int32 [B, T], got ${ids.dtype} [${ids.shape.join(',')}]`,
      );
    }
    const { hidden, present } = this.transformer.forward(ids, options.past);
    const cache = options.past || options.useCache ? present : undefined;
    // a 16-bit table (a dtype: 'f16' load) is read by the head as it is: no fused loss over it
    const table = quantizedTable(this.transformer.wte);
    const project = (h: Tensor) =>
      table ? tiedLogits(h, table) : h.matmul(this.lmHeadWeight.transpose(0, 1)); // (B, T, vocab)
    if (options.labels && !options.lastOnly && !table) {
      const loss = lmHeadLoss(hidden, this.lmHeadWeight, options.labels);
      return outputWithLabels('GPT2LMHeadModel', hidden, project, loss, cache);
    }
    const out: LMOutput = { logits: project(options.lastOnly ? hidden.slice(1, -1) : hidden) };
    if (cache) out.present = cache;
    if (options.labels) out.loss = lmLoss(out.logits, options.labels);
    return out;
  }
}
