/**
 * GPT-2's configuration exactly as Hugging Face writes it in `config.json` (snake_case keys), so a
 * checkpoint directory's config loads as is. Defaults are GPT-2 small (124M).
 */
export interface GPT2Config {
  /** Always 'gpt2'. */
  model_type: 'gpt2';
  /** Number of tokens (50257 for GPT-2's BPE). */
  vocab_size: number;
  /** Context length (number of learned positions). */
  n_positions: number;
  /** Model width (embedding and hidden size). */
  n_embd: number;
  /** Number of transformer blocks. */
  n_layer: number;
  /** Attention heads per block (n_embd must be divisible by it). */
  n_head: number;
  /** MLP width; null means 4 · n_embd. */
  n_inner: number | null;
  /** The MLP's activation (`gelu_new`: GELU's tanh form). */
  activation_function: GPT2Activation;
  /** Dropout on each block's residual branches. */
  resid_pdrop: number;
  /** Dropout on the embeddings. */
  embd_pdrop: number;
  /** Dropout on the attention weights. */
  attn_pdrop: number;
  /** LayerNorm's epsilon. */
  layer_norm_epsilon: number;
  /** Std of the normal initialisation of weights. */
  initializer_range: number;
  /** Divide attention scores by √head_dim (true in every released GPT-2). */
  scale_attn_weights: boolean;
  /** Also divide by (layer index + 1) (Mistral-style stability trick; false in GPT-2). */
  scale_attn_by_inverse_layer_idx: boolean;
  /** The output layer is the token embedding (required: true for every released GPT-2). */
  tie_word_embeddings: boolean;
  /** Beginning-of-text token (null: none). */
  bos_token_id: number | null;
  /** End-of-text token (null: none); generation stops on it by default. */
  eos_token_id: number | null;
}

/** HF's ACT2FN names that GPT-2 checkpoints use. */
export type GPT2Activation = 'gelu_new' | 'gelu_pytorch_tanh' | 'gelu' | 'relu';
const ACTIVATIONS: readonly GPT2Activation[] = ['gelu_new', 'gelu_pytorch_tanh', 'gelu', 'relu'];

/** GPT-2 small (124M parameters), as in Hugging Face's `gpt2/config.json`. */
export const GPT2_SMALL: Readonly<GPT2Config> = Object.freeze({
  model_type: 'gpt2',
  vocab_size: 50257,
  n_positions: 1024,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  n_inner: null,
  activation_function: 'gelu_new',
  resid_pdrop: 0.1,
  embd_pdrop: 0.1,
  attn_pdrop: 0.1,
  layer_norm_epsilon: 1e-5,
  initializer_range: 0.02,
  scale_attn_weights: true,
  scale_attn_by_inverse_layer_idx: false,
  tie_word_embeddings: true,
  bos_token_id: 50256,
  eos_token_id: 50256,
});

/**
 * A validated config: GPT-2 small's values overridden by `fields` (for example a parsed HF
 * `config.json`; keys GPT-2 does not use are ignored, wrong types and impossible sizes throw).
 *
 * @example
 * const c = gpt2Config({ vocab_size: 256, n_embd: 64, n_layer: 2, n_head: 4 });
 * c.n_positions; // 1024 (from GPT-2 small)
 */
export function gpt2Config(
  fields: Partial<Record<keyof GPT2Config, unknown>> | Record<string, unknown> = {},
): GPT2Config {
  const f = fields as Record<string, unknown>;
  const cfg: Record<string, unknown> = { ...GPT2_SMALL };
  for (const key of Object.keys(GPT2_SMALL) as (keyof GPT2Config)[]) {
    if (f[key] !== undefined) cfg[key] = f[key];
  }
  const bad = (key: string, expected: string): never => {
    throw new Error(`gpt2Config: '${key}' must be ${expected}, got ${JSON.stringify(cfg[key])}`);
  };
  if (cfg.model_type !== 'gpt2') bad('model_type', "'gpt2'");
  for (const key of ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'] as const) {
    if (!Number.isInteger(cfg[key]) || (cfg[key] as number) <= 0) bad(key, 'a positive integer');
  }
  if (cfg.n_inner !== null && (!Number.isInteger(cfg.n_inner) || (cfg.n_inner as number) <= 0)) {
    bad('n_inner', 'null or a positive integer');
  }
  for (const key of ['resid_pdrop', 'embd_pdrop', 'attn_pdrop'] as const) {
    const p = cfg[key];
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) bad(key, 'a probability in [0, 1)');
  }
  for (const key of ['layer_norm_epsilon', 'initializer_range'] as const) {
    if (typeof cfg[key] !== 'number' || !((cfg[key] as number) > 0)) bad(key, 'a positive number');
  }
  for (const key of [
    'scale_attn_weights',
    'scale_attn_by_inverse_layer_idx',
    'tie_word_embeddings',
  ] as const) {
    if (typeof cfg[key] !== 'boolean') bad(key, 'a boolean');
  }
  for (const key of ['bos_token_id', 'eos_token_id'] as const) {
    if (cfg[key] !== null && !Number.isInteger(cfg[key])) bad(key, 'null or an integer');
  }
  if (!ACTIVATIONS.includes(cfg.activation_function as GPT2Activation))
    bad('activation_function', ACTIVATIONS.join(' | '));
  const c = cfg as unknown as GPT2Config;
  if (c.n_embd % c.n_head !== 0) {
    throw new Error(`gpt2Config: n_embd (${c.n_embd}) must be divisible by n_head (${c.n_head})`);
  }
  if (!c.tie_word_embeddings) {
    throw new Error(
      'gpt2Config: only tie_word_embeddings = true is supported (every released GPT-2 ties lm_head to wte)',
    );
  }
  return c;
}

/**
 * The MLP width: n_inner, or 4 · n_embd when it is null.
 *
 * @example
 * innerDim(GPT2_SMALL); // 3072
 */
export function innerDim(c: GPT2Config): number {
  return c.n_inner ?? 4 * c.n_embd;
}

/**
 * The config as HF's `config.json` (with `architectures`, as `save_pretrained` writes it).
 *
 * @example
 * JSON.stringify(configToJSON(model.config)); // what save_pretrained writes as config.json
 */
export function configToJSON(c: GPT2Config): Record<string, unknown> {
  return { architectures: ['GPT2LMHeadModel'], ...c };
}
