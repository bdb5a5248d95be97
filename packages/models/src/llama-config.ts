/**
 * The configuration of Llama-family decoders (Llama 2/3.x, SmolLM, Qwen2/2.5, Mistral) as
 * Hugging Face writes it in `config.json`, normalised into one typed object. The two spellings of
 * the rotary embedding's settings are read: transformers 5's `rope_parameters`, and the older
 * top-level `rope_theta` + `rope_scaling`.
 */

/** The decoders `LlamaForCausalLM` implements (they differ only in biases and attention windows). */
export type LlamaModelType = 'llama' | 'qwen2' | 'mistral';
const MODEL_TYPES: readonly LlamaModelType[] = ['llama', 'qwen2', 'mistral'];

/** RoPE variants: plain, position interpolation, dynamic NTK and Llama 3.1's frequency bands. */
export type RopeType = 'default' | 'linear' | 'dynamic' | 'llama3';
const ROPE_TYPES: readonly RopeType[] = ['default', 'linear', 'dynamic', 'llama3'];

/** The rotary embedding's parameters, whichever spelling the file used. */
export interface RopeParameters {
  /** Which frequencies: see `RopeType`. */
  ropeType: RopeType;
  /** Base θ of the frequencies θ^(−2i/d). */
  theta: number;
  /** Scaling factor (linear, dynamic, llama3); 1 for default. */
  factor: number;
  /** Context length the model was pre-trained with (dynamic, llama3). */
  originalMaxPositionEmbeddings: number;
  /** llama3: wavelengths above original/low_freq_factor are divided by `factor`. */
  lowFreqFactor: number;
  /** llama3: wavelengths below original/high_freq_factor are kept. */
  highFreqFactor: number;
}

/** Which attention a layer uses: every earlier token, or only the last `sliding_window`. */
export type LayerType = 'full_attention' | 'sliding_attention';

/** A validated Llama-family config (snake_case fields as in `config.json`, plus `rope`). */
export interface LlamaConfig {
  /** 'llama', 'qwen2' or 'mistral'. */
  model_type: LlamaModelType;
  /** Number of tokens. */
  vocab_size: number;
  /** Model width. */
  hidden_size: number;
  /** Width of the SwiGLU MLP. */
  intermediate_size: number;
  /** Number of decoder layers. */
  num_hidden_layers: number;
  /** Query heads. */
  num_attention_heads: number;
  /** Key/value heads (grouped-query attention; = num_attention_heads for multi-head). */
  num_key_value_heads: number;
  /** Width of one head (default hidden_size / num_attention_heads). */
  head_dim: number;
  /** The MLP's activation ('silu' in every Llama-family model). */
  hidden_act: 'silu' | 'gelu_pytorch_tanh' | 'gelu';
  /** Context length (generation restarts the cache from the last half past it). */
  max_position_embeddings: number;
  /** RMSNorm's epsilon. */
  rms_norm_eps: number;
  /** Std of the normal initialisation. */
  initializer_range: number;
  /** lm_head is embed_tokens (tied) or its own matrix. */
  tie_word_embeddings: boolean;
  /** Biases on q_proj, k_proj, v_proj (Qwen2: always; Llama: `attention_bias`). */
  qkv_bias: boolean;
  /** Bias on o_proj (Llama's `attention_bias`; Qwen2 never). */
  o_bias: boolean;
  /** Biases on gate/up/down_proj (Llama's `mlp_bias`). */
  mlp_bias: boolean;
  /** Width of the sliding attention window, or null (Mistral v0.1: 4096). */
  sliding_window: number | null;
  /** Attention kind per layer (all 'full_attention' unless a window applies). */
  layer_types: LayerType[];
  /** The rotary embedding, normalised from either spelling. */
  rope: RopeParameters;
  /** Beginning-of-text token, or null. */
  bos_token_id: number | null;
  /** End-of-text token(s) (Llama 3 lists several), or null. */
  eos_token_id: number | number[] | null;
}

/**
 * The rotary parameters of a raw `config.json`: `rope_parameters` (transformers 5) or
 * `rope_theta` + `rope_scaling` (older files; `type` or `rope_type` names the variant).
 *
 * @example
 * ropeParameters({ rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1,
 *   high_freq_factor: 4, original_max_position_embeddings: 8192 }, max_position_embeddings: 131072 }).ropeType; // 'llama3'
 */
export function ropeParameters(raw: Record<string, unknown>): RopeParameters {
  const params = (raw.rope_parameters ?? raw.rope_scaling ?? {}) as Record<string, unknown>;
  if (typeof params !== 'object' || params === null) {
    throw new Error(`llamaConfig: rope_parameters/rope_scaling must be an object or null`);
  }
  const type = (params.rope_type ?? params.type ?? 'default') as string;
  if (!ROPE_TYPES.includes(type as RopeType)) {
    throw new Error(
      `llamaConfig: RoPE type '${type}' is not supported (supported: ${ROPE_TYPES.join(', ')})`,
    );
  }
  const theta = params.rope_theta ?? raw.rope_theta ?? 10000;
  const num = (key: string, fallback: number): number => {
    const v = params[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) {
      throw new Error(`llamaConfig: RoPE '${key}' must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  if (typeof theta !== 'number' || !(theta > 0)) {
    throw new Error(`llamaConfig: rope_theta must be a positive number, got ${JSON.stringify(theta)}`);
  }
  const partial = params.partial_rotary_factor ?? raw.partial_rotary_factor ?? 1;
  if (partial !== 1)
    throw new Error(`llamaConfig: partial_rotary_factor ${String(partial)} is not supported`);
  const ropeType = type as RopeType;
  return {
    ropeType,
    theta,
    factor: ropeType === 'default' ? 1 : num('factor', Number.NaN),
    originalMaxPositionEmbeddings: num(
      'original_max_position_embeddings',
      (raw.max_position_embeddings as number) ?? 2048,
    ),
    lowFreqFactor: ropeType === 'llama3' ? num('low_freq_factor', Number.NaN) : 1,
    highFreqFactor: ropeType === 'llama3' ? num('high_freq_factor', Number.NaN) : 1,
  };
}

/**
 * A validated config from a parsed `config.json` (defaults are transformers' for the type;
 * impossible sizes and unsupported features throw, naming the key).
 *
 * @example
 * const c = llamaConfig({ model_type: 'qwen2', vocab_size: 512, hidden_size: 64, intermediate_size: 128,
 *   num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 });
 * c.qkv_bias; // true (Qwen2)
 */
export function llamaConfig(raw: Record<string, unknown>): LlamaConfig {
  const type = (raw.model_type ?? 'llama') as LlamaModelType;
  if (!MODEL_TYPES.includes(type)) {
    throw new Error(`llamaConfig: model_type '${String(type)}' is not one of ${MODEL_TYPES.join(', ')}`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) <= 0) {
      throw new Error(`llamaConfig: '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'boolean')
      throw new Error(`llamaConfig: '${key}' must be a boolean, got ${JSON.stringify(v)}`);
    return v;
  };
  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    throw new Error(
      `llamaConfig: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`,
    );
  }
  const headDim = int('head_dim', Math.floor(hidden / heads));
  if (headDim % 2 !== 0) throw new Error(`llamaConfig: head_dim (${headDim}) must be even for RoPE`);
  const act = (raw.hidden_act ?? 'silu') as LlamaConfig['hidden_act'];
  if (!['silu', 'gelu_pytorch_tanh', 'gelu'].includes(act)) {
    throw new Error(
      `llamaConfig: hidden_act '${String(act)}' is not supported (silu, gelu_pytorch_tanh, gelu)`,
    );
  }
  const layers = int('num_hidden_layers');
  const attentionBias = bool('attention_bias', false);
  // sliding windows: Mistral applies `sliding_window` to every layer; Qwen2 only with
  // use_sliding_window, from layer max_window_layers on; transformers 5 lists `layer_types`.
  const windowRaw = raw.sliding_window ?? null;
  const useWindow = type === 'mistral' || (type === 'qwen2' && raw.use_sliding_window === true);
  const window = useWindow && windowRaw !== null ? int('sliding_window') : null;
  let layerTypes: LayerType[];
  if (Array.isArray(raw.layer_types)) {
    layerTypes = raw.layer_types as LayerType[];
    if (
      layerTypes.length !== layers ||
      layerTypes.some((t) => t !== 'full_attention' && t !== 'sliding_attention')
    )
      throw new Error(`llamaConfig: layer_types must list ${layers} of full_attention | sliding_attention`);
  } else {
    const from = type === 'qwen2' ? ((raw.max_window_layers as number | undefined) ?? 0) : 0;
    layerTypes = Array.from({ length: layers }, (_, i) =>
      window !== null && i >= from ? 'sliding_attention' : 'full_attention',
    );
  }
  if (layerTypes.includes('sliding_attention') && window === null) {
    throw new Error('llamaConfig: layer_types has sliding_attention but sliding_window is not set');
  }
  const eos = raw.eos_token_id ?? null;
  const maxPos = int('max_position_embeddings', 2048);
  return {
    model_type: type,
    vocab_size: int('vocab_size'),
    hidden_size: hidden,
    intermediate_size: int('intermediate_size'),
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    hidden_act: act,
    max_position_embeddings: maxPos,
    rms_norm_eps: (raw.rms_norm_eps as number | undefined) ?? 1e-6,
    initializer_range: (raw.initializer_range as number | undefined) ?? 0.02,
    tie_word_embeddings: bool('tie_word_embeddings', false),
    qkv_bias: type === 'qwen2' ? true : attentionBias,
    o_bias: type === 'qwen2' ? false : attentionBias,
    mlp_bias: bool('mlp_bias', false),
    sliding_window: window,
    layer_types: layerTypes,
    rope: ropeParameters({ ...raw, max_position_embeddings: maxPos }),
    bos_token_id: (raw.bos_token_id as number | null | undefined) ?? null,
    eos_token_id: Array.isArray(eos) || typeof eos === 'number' ? (eos as number | number[]) : null,
  };
}

/**
 * The end-of-text ids of a config's `eos_token_id` (a number, a list or null) as a list.
 *
 * @example
 * eosIds({ eos_token_id: [128001, 128009] }); // [128001, 128009]
 */
export function eosIds(config: { eos_token_id: number | readonly number[] | null }): number[] {
  const e = config.eos_token_id;
  return e === null ? [] : typeof e === 'number' ? [e] : [...e];
}
