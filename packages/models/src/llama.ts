import { Embedding, F, initializers as init, Linear, Module, ModuleList, RMSNorm } from '@lowrank/nn';
import { arange, cat, type Device, Generator, OpError, type Tensor } from '@lowrank/tensor';
import type { CausalLM } from './causal-lm.js';
import type { CachedOutput, KVCache, LayerCache, LMForwardOptions, LMOutput } from './gpt2.js';
import { type LlamaConfig, llamaConfig } from './llama-config.js';
import {
  lmHeadLoss,
  lmLoss,
  outputWithLabels,
  quantizedHeadError,
  quantizedTable,
  tiedLogits,
} from './lm-head.js';
import { applyRotary, rotaryTables } from './rope.js';

/**
 * The Llama decoder (Touvron et al. 2023) and its relatives Qwen2 and Mistral, with Hugging
 * Face's module names so `model.safetensors` loads by name:
 *
 *   model.embed_tokens                                 token embeddings (no position embeddings)
 *   model.layers.N.input_layernorm                     RMSNorm before attention
 *   model.layers.N.self_attn.{q,k,v,o}_proj            grouped-query attention with RoPE on q, k
 *   model.layers.N.post_attention_layernorm            RMSNorm before the MLP
 *   model.layers.N.mlp.{gate,up,down}_proj             SwiGLU: down(silu(gate(x)) · up(x))
 *   model.norm                                         final RMSNorm
 *   lm_head                                            [vocab, hidden], or embed_tokens when tied
 *
 * Every projection is an `nn.Linear` (weights [out, in], as the files), so LoRA targets them by name.
 */

/**
 * A layer mapping one tensor to one: a Linear, or the LoRA layer that replaced it, which wraps
 * the Linear as `base_layer` and takes `base_layer(x)` from the caller when given it.
 */
interface Layer extends Module {
  forward(x: Tensor, base?: Tensor): Tensor;
  base_layer?: Module;
}

/** The float32 Linear under a layer (itself, or a LoRA layer's base), or null (quantized, half). */
function floatLinear(layer: Layer): Linear | null {
  const base = layer instanceof Linear ? layer : layer.base_layer;
  return base instanceof Linear && base.weight.dtype === 'float32' ? base : null;
}

/**
 * The outputs of `layers` that all read x. Where each is a float32 Linear (or a LoRA layer over
 * one) the weights are concatenated and multiplied in one product, and each LoRA layer adds its
 * adapters to its slice of it; the gradient through the slices is one product too. On the H200 at
 * SmolLM2's shape (x [4096, 576]; q 576, k and v 192 wide) that product takes 0.147 ms against
 * 0.220 for the three, whose 576- and 192-wide outputs fill the GPU less (22.3 and 18.5 against
 * 30.9 TFLOP/s; bench/results/h200-2026-12-04-s7/run1/). The weights' concatenation is a copy each
 * call (2.2 MB a layer there). Decoding (one row a step) gains too, from one dispatch where
 * there were three: 21.1 / 20.7 tokens/s against 19.4 / 18.3 with three products
 * (run5-decode.txt there). Otherwise (a quantized or half base) each layer runs on its own.
 *
 * @example
 * const [q, k, v] = sharedInputProjections(x, [attn.q_proj, attn.k_proj, attn.v_proj]);
 */
export function sharedInputProjections(x: Tensor, layers: readonly Layer[]): Tensor[] {
  const bases = layers.map(floatLinear);
  const biased = bases.map((b) => b?.bias != null);
  if (bases.some((b) => b === null) || biased.some((b) => b !== biased[0]))
    return layers.map((l) => l.forward(x));
  const linears = bases as Linear[];
  const weight = cat(
    linears.map((b) => b.weight),
    0,
  );
  const bias = biased[0] ? cat(linears.map((b) => b.bias as Tensor)) : null;
  const parts = F.linear(x, weight, bias).split(
    linears.map((b) => b.outFeatures),
    -1,
  );
  return layers.map((l, i) => (l instanceof Linear ? parts[i] : l.forward(x, parts[i])));
}

/**
 * softmax(q·kᵀ·scale, masked)·v with n_head query heads sharing n_kv key/value heads (GQA:
 * query head h reads kv head ⌊h / (n_head/n_kv)⌋, as HF's `repeat_kv`): the fused attention with
 * `enableGqa`, which reads each kv head for its group inside the kernel (no copy, no [T, S] scores).
 * q [B, n_head, T, d], k/v [B, n_kv, S, d], mask bool [T, S] (true = may attend), or `'causal'`
 * (T = S, no cache: the kernels mask by position, skip the blocks above the diagonal and read no
 * mask) → [B, n_head, T, d].
 *
 * @example
 * const y = groupedQueryAttention(q, k, v, 'causal', 1 / Math.sqrt(16));
 */
export function groupedQueryAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: Tensor | 'causal',
  scale: number,
): Tensor {
  if (mask === 'causal')
    return F.scaledDotProductAttention(q, k, v, { isCausal: true, scale, enableGqa: true });
  return F.scaledDotProductAttention(q, k, v, { attnMask: mask, scale, enableGqa: true });
}

/** Self-attention: q/k/v projections, RoPE on q and k, grouped-query attention, o_proj. */
export class LlamaAttention extends Module {
  /** hidden → n_head·head_dim. */
  q_proj: Layer;
  /** hidden → n_kv·head_dim. */
  k_proj: Layer;
  /** hidden → n_kv·head_dim. */
  v_proj: Layer;
  /** n_head·head_dim → hidden. */
  o_proj: Layer;

  constructor(
    /** The model's configuration. */
    readonly config: LlamaConfig,
  ) {
    super();
    const { hidden_size: C, num_attention_heads: H, num_key_value_heads: KV, head_dim: D } = config;
    this.q_proj = this.registerModule('q_proj', new Linear(C, H * D, { bias: config.qkv_bias }));
    this.k_proj = this.registerModule('k_proj', new Linear(C, KV * D, { bias: config.qkv_bias }));
    this.v_proj = this.registerModule('v_proj', new Linear(C, KV * D, { bias: config.qkv_bias }));
    this.o_proj = this.registerModule('o_proj', new Linear(H * D, C, { bias: config.o_bias }));
  }

  /**
   * x [B, T, C] → [B, T, C]. `rope` holds cos/sin [T, head_dim] of the new positions; `past` the
   * rotated keys and values so far, [B, n_kv, T_past, head_dim] (returned extended in `present`).
   * `mask`: see `groupedQueryAttention` (`'causal'` only without cached positions).
   */
  forward(
    x: Tensor,
    rope: { cos: Tensor; sin: Tensor },
    mask: Tensor | 'causal',
    past?: LayerCache,
  ): CachedOutput {
    const [B, T] = x.shape;
    const { num_attention_heads: H, num_key_value_heads: KV, head_dim: D } = this.config;
    // RoPE on (B, T, n, d), where the projections' rows are contiguous: the rotated q and k are
    // written in that layout too, and the attention reads its heads through the permuted strides
    const [cos, sin] = [rope.cos.unsqueeze(1), rope.sin.unsqueeze(1)]; // [T, 1, d]
    const split = (t: Tensor, n: number): Tensor => t.reshape(B, T, n, D);
    const heads = (t: Tensor): Tensor => t.permute(0, 2, 1, 3); // (B, n, T, d)
    const [qx, kx, vx] = sharedInputProjections(x, [this.q_proj, this.k_proj, this.v_proj]);
    const q = heads(applyRotary(split(qx, H), cos, sin));
    const k1 = heads(applyRotary(split(kx, KV), cos, sin));
    const v1 = heads(split(vx, KV));
    if (mask === 'causal' && past && past.k.shape[2] > 0) {
      throw new OpError(
        'LlamaAttention',
        `a 'causal' mask is for calls without a cache (got ${past.k.shape[2]} cached positions): pass the bool mask [T, S]`,
      );
    }
    const k = past ? cat([past.k, k1], 2) : k1;
    const v = past ? cat([past.v, v1], 2) : v1;
    const y = groupedQueryAttention(q, k, v, mask, 1 / Math.sqrt(D)); // (B, H, T, d)
    const out = this.o_proj.forward(y.permute(0, 2, 1, 3).reshape(B, T, H * D));
    return { out, present: { k, v } };
  }
}

/** The SwiGLU MLP (Shazeer 2020): down_proj(act(gate_proj(x)) · up_proj(x)). */
export class LlamaMLP extends Module {
  /** hidden → intermediate (gate). */
  gate_proj: Layer;
  /** hidden → intermediate. */
  up_proj: Layer;
  /** intermediate → hidden. */
  down_proj: Layer;

  constructor(
    /** The model's configuration. */
    readonly config: LlamaConfig,
  ) {
    super();
    const [C, I, bias] = [config.hidden_size, config.intermediate_size, config.mlp_bias];
    this.gate_proj = this.registerModule('gate_proj', new Linear(C, I, { bias }));
    this.up_proj = this.registerModule('up_proj', new Linear(C, I, { bias }));
    this.down_proj = this.registerModule('down_proj', new Linear(I, C, { bias }));
  }

  /** x [B, T, C] → [B, T, C]. */
  forward(x: Tensor): Tensor {
    const g = this.gate_proj.forward(x);
    const up = this.up_proj.forward(x);
    // silu(gate)·up is one recorded op (F.swiglu): it saves gate and up only
    if (this.config.hidden_act === 'silu') return this.down_proj.forward(F.swiglu(g, up));
    const act = g.gelu({ approximate: this.config.hidden_act === 'gelu' ? 'none' : 'tanh' });
    return this.down_proj.forward(act.mul(up));
  }
}

/** One pre-norm decoder layer: h = x + attn(norm(x)); out = h + mlp(norm(h)). */
export class LlamaDecoderLayer extends Module {
  /** RMSNorm before attention. */
  readonly input_layernorm: RMSNorm;
  /** Self-attention. */
  readonly self_attn: LlamaAttention;
  /** RMSNorm before the MLP. */
  readonly post_attention_layernorm: RMSNorm;
  /** The SwiGLU MLP. */
  readonly mlp: LlamaMLP;

  constructor(config: LlamaConfig) {
    super();
    const eps = config.rms_norm_eps;
    this.input_layernorm = this.registerModule('input_layernorm', new RMSNorm(config.hidden_size, { eps }));
    this.self_attn = this.registerModule('self_attn', new LlamaAttention(config));
    this.post_attention_layernorm = this.registerModule(
      'post_attention_layernorm',
      new RMSNorm(config.hidden_size, { eps }),
    );
    this.mlp = this.registerModule('mlp', new LlamaMLP(config));
  }

  /** x [B, T, C] → `out` [B, T, C] and the layer's extended cache in `present` (`mask`: see LlamaAttention). */
  forward(
    x: Tensor,
    rope: { cos: Tensor; sin: Tensor },
    mask: Tensor | 'causal',
    past?: LayerCache,
  ): CachedOutput {
    const a = this.self_attn.forward(this.input_layernorm.forward(x), rope, mask, past);
    const h = x.add(a.out);
    return { out: h.add(this.mlp.forward(this.post_attention_layernorm.forward(h))), present: a.present };
  }
}

/**
 * The mask [T, S] of T new queries at positions past…past+T−1 over S = past+T keys: true where
 * key j ≤ query i (and, with a window w, j > i − w, as HF's sliding attention).
 *
 * @example
 * causalWindowMask(2, 1, null, 'cpu'); // [[true, true, false], [true, true, true]]
 */
export function causalWindowMask(T: number, past: number, window: number | null, device: Device): Tensor {
  const i = arange(past, past + T, 1, { dtype: 'int32', device }).reshape(T, 1);
  const j = arange(0, past + T, 1, { dtype: 'int32', device }).reshape(1, past + T);
  const causal = j.le(i);
  return window === null ? causal : causal.logicalAnd(j.gt(i.sub(window)));
}

/** Embeddings, decoder layers and the final norm (HF's `LlamaModel`, the `model.` prefix). */
export class LlamaModel extends Module {
  /** Token embeddings [vocab, hidden]. */
  embed_tokens: Embedding;
  /** The decoder layers (`layers.0` …). */
  readonly layers: ModuleList<LlamaDecoderLayer>;
  /** Final RMSNorm. */
  readonly norm: RMSNorm;

  constructor(
    /** The model's configuration. */
    readonly config: LlamaConfig,
  ) {
    super();
    this.embed_tokens = this.registerModule(
      'embed_tokens',
      new Embedding(config.vocab_size, config.hidden_size),
    );
    const layers = Array.from({ length: config.num_hidden_layers }, () => new LlamaDecoderLayer(config));
    this.layers = this.registerModule('layers', new ModuleList(layers));
    this.norm = this.registerModule('norm', new RMSNorm(config.hidden_size, { eps: config.rms_norm_eps }));
  }

  /** ids [B, T] int32 → hidden states [B, T, C] after the final norm, and the extended cache. */
  forward(
    ids: Tensor,
    past?: KVCache,
  ): {
    /** Hidden states [B, T, C]. */
    hidden: Tensor;
    /** The cache including this call's tokens. */
    present: KVCache;
  } {
    const T = ids.shape[1];
    const pastLen = past?.[0]?.k.shape[2] ?? 0;
    const c = this.config;
    const rope = rotaryTables(c.head_dim, c.rope, pastLen, T, ids.device);
    // without a cache the full layers take the kernels' own causal mask
    const full = pastLen === 0 ? 'causal' : causalWindowMask(T, pastLen, null, ids.device);
    const windowed =
      c.sliding_window === null ? full : causalWindowMask(T, pastLen, c.sliding_window, ids.device);
    let x = this.embed_tokens.forward(ids); // (B, T, C)
    const present: KVCache = [];
    for (let i = 0; i < this.layers.length; i++) {
      const mask = c.layer_types[i] === 'sliding_attention' ? windowed : full;
      const r = this.layers.at(i).forward(x, rope, mask, past?.[i]);
      x = r.out;
      present.push(r.present);
    }
    return { hidden: this.norm.forward(x), present };
  }
}

/**
 * A Llama-family decoder with the language-modelling head (HF's `LlamaForCausalLM`, also
 * `Qwen2ForCausalLM` and `MistralForCausalLM`), driven by `config.json`.
 *
 * @example
 * ```ts
 * const model = new LlamaForCausalLM({ model_type: 'llama', vocab_size: 512, hidden_size: 64,
 *   intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 });
 * const { logits, loss } = model.forward(ids, { labels: ids });
 * ```
 */
export class LlamaForCausalLM extends Module implements CausalLM {
  /** The validated configuration. */
  readonly config: LlamaConfig;
  /** The `config.json` fields as given (written back by `savePretrained`). */
  readonly rawConfig: Readonly<Record<string, unknown>>;
  /** The body (HF's `model.` prefix). */
  readonly model: LlamaModel;
  /** The output projection [vocab, hidden], or null when tied to `model.embed_tokens`. */
  lm_head: Layer | null;
  /**
   * Where the weights came from (the directory or Hub id given to `fromPretrained`), null for a
   * model built in code; an adapter saved from it records this as `base_model_name_or_path`.
   */
  nameOrPath: string | null = null;

  /** A freshly initialised model (HF's scheme, seeded); load a checkpoint to overwrite it. */
  constructor(config: Record<string, unknown> | LlamaConfig, options: { seed?: number } = {}) {
    super();
    const raw = config as Record<string, unknown>;
    this.config = 'rope' in raw && 'qkv_bias' in raw ? (raw as unknown as LlamaConfig) : llamaConfig(raw);
    this.rawConfig = 'rope' in raw && 'qkv_bias' in raw ? {} : { ...raw };
    this.model = this.registerModule('model', new LlamaModel(this.config));
    const c = this.config;
    this.lm_head = this.registerModule(
      'lm_head',
      c.tie_word_embeddings ? null : new Linear(c.hidden_size, c.vocab_size, { bias: false }),
    );
    this.initWeights(options.seed ?? 0);
  }

  /** HF's `_init_weights`: Linear and Embedding weights ~ N(0, initializer_range²), biases 0, norms 1. */
  initWeights(seed = 0): this {
    const generator = new Generator(seed);
    for (const [name, p] of this.namedParameters()) {
      if (name.endsWith('norm.weight')) init.ones_(p);
      else if (name.endsWith('.bias')) init.zeros_(p);
      else init.normal_(p, 0, this.config.initializer_range, { generator });
    }
    return this;
  }

  /**
   * The output projection's weight [vocab, hidden] (embed_tokens' base weight when tied, as
   * PEFT). Throws when the tied table is 16-bit (a `dtype: 'f16'` load): the head is then
   * `model.embed_tokens.weight`, a `QuantizedWeight`.
   */
  get lmHeadWeight(): Tensor {
    const table = this.lm_head ? null : quantizedTable(this.model.embed_tokens);
    if (table) throw quantizedHeadError('LlamaForCausalLM.lmHeadWeight', table, 'model.embed_tokens');
    const m: Module = this.lm_head ?? this.model.embed_tokens;
    return 'base_layer' in m && m.base_layer instanceof Module
      ? m.base_layer.getParameter('weight')
      : m.getParameter('weight');
  }

  /** The device the parameters live on. */
  get device(): Device {
    return (
      (this.lm_head ? null : quantizedTable(this.model.embed_tokens))?.device ?? this.lmHeadWeight.device
    );
  }

  /** Positions the model was trained for (`max_position_embeddings`). */
  get contextLength(): number {
    return this.config.max_position_embeddings;
  }

  /**
   * ids [B, T] int32 → logits [B, T, vocab] (loss with `labels`, cache with `useCache`/`past`).
   * With labels, the loss skips the logits (`lmHeadLoss`) when the head is tied or a plain
   * `Linear`; a LoRA-wrapped `lm_head` computes the logits and `lmLoss` over them (the fused loss
   * knows one weight and bias, not an adapter), and so does a tied head over a 16-bit table
   * (`tiedLogits`).
   */
  forward(ids: Tensor, options: LMForwardOptions = {}): LMOutput {
    if (ids.rank !== 2 || ids.dtype !== 'int32') {
      throw new OpError(
        'LlamaForCausalLM',
        `input_ids must be int32 [B, T], got ${ids.dtype} [${ids.shape.join(',')}]`,
      );
    }
    const { hidden, present } = this.model.forward(ids, options.past);
    const cache = options.past || options.useCache ? present : undefined;
    const head = this.lm_head;
    const table = head ? null : quantizedTable(this.model.embed_tokens);
    const project = (h: Tensor) =>
      head ? head.forward(h) : table ? tiedLogits(h, table) : h.matmul(this.lmHeadWeight.transpose(0, 1)); // (B, T, vocab)
    // exactly nn.Linear: a subclass or a LoRA layer may change what the head computes
    const linear = head instanceof Linear && head.constructor === Linear ? head : null;
    if (options.labels && !options.lastOnly && ((head === null && !table) || linear)) {
      const bias = linear?.bias ?? null;
      const loss = lmHeadLoss(hidden, this.lmHeadWeight, options.labels, { bias });
      return outputWithLabels('LlamaForCausalLM', hidden, project, loss, cache);
    }
    const out: LMOutput = { logits: project(options.lastOnly ? hidden.slice(1, -1) : hidden) };
    if (cache) out.present = cache;
    if (options.labels) out.loss = lmLoss(out.logits, options.labels);
    return out;
  }
}
