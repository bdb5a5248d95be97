import {
  Dropout,
  Embedding,
  F,
  initializers as init,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
} from '@lowrank/nn';
import { arange, Generator, OpError, type Tensor } from '@lowrank/tensor';

/**
 * A small BERT/RoBERTa-style encoder with a sequence-classification head, for the LoRA paper's
 * NLU setup (RoBERTa/DeBERTa on GLUE, LoRA on the query and value projections). Module names
 * follow Hugging Face's RoBERTa (`roberta.encoder.layer.N.attention.self.query`, `classifier.out_proj`),
 * so PEFT-style targets (`['query', 'value']`) and `modulesToSave: ['classifier']` work as there.
 * Post-LayerNorm blocks, learned absolute positions, exact GELU.
 */
export interface EncoderConfig {
  /** Number of tokens. */
  vocab_size: number;
  /** Context length (learned positions). */
  max_position_embeddings: number;
  /** Model width. */
  hidden_size: number;
  /** Number of encoder layers. */
  num_hidden_layers: number;
  /** Attention heads per layer (hidden_size must be divisible by it). */
  num_attention_heads: number;
  /** Width of each layer's feed-forward block. */
  intermediate_size: number;
  /** Dropout on embeddings and residual branches. */
  hidden_dropout_prob: number;
  /** Dropout on the attention weights. */
  attention_probs_dropout_prob: number;
  /** LayerNorm's epsilon. */
  layer_norm_eps: number;
  /** Std of the normal initialisation of weights. */
  initializer_range: number;
  /** Number of classes of the classification head. */
  num_labels: number;
}

/** A small default encoder (2 layers, width 64) for tests and examples; override with `encoderConfig`. */
export const ENCODER_DEFAULTS: Readonly<EncoderConfig> = Object.freeze({
  vocab_size: 1000,
  max_position_embeddings: 128,
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 256,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  layer_norm_eps: 1e-5,
  initializer_range: 0.02,
  num_labels: 2,
});

/**
 * A validated encoder config: `ENCODER_DEFAULTS` overridden by `fields` (sizes must be positive
 * integers and hidden_size divisible by num_attention_heads).
 *
 * @example
 * encoderConfig({ num_labels: 3 }).hidden_size; // 64
 */
export function encoderConfig(fields: Partial<EncoderConfig> = {}): EncoderConfig {
  const c = { ...ENCODER_DEFAULTS, ...fields };
  for (const key of [
    'vocab_size',
    'max_position_embeddings',
    'hidden_size',
    'num_hidden_layers',
    'num_attention_heads',
    'intermediate_size',
    'num_labels',
  ] as const) {
    if (!Number.isInteger(c[key]) || c[key] <= 0) {
      throw new Error(`encoderConfig: '${key}' must be a positive integer, got ${c[key]}`);
    }
  }
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new Error(
      `encoderConfig: hidden_size (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`,
    );
  }
  return c;
}

interface Layer extends Module {
  forward(x: Tensor): Tensor;
}

class SelfAttention extends Module {
  query: Layer;
  key: Layer;
  value: Layer;
  readonly dropout: Dropout;
  constructor(private readonly c: EncoderConfig) {
    super();
    const d = c.hidden_size;
    this.query = this.registerModule('query', new Linear(d, d));
    this.key = this.registerModule('key', new Linear(d, d));
    this.value = this.registerModule('value', new Linear(d, d));
    this.dropout = this.registerModule('dropout', new Dropout(c.attention_probs_dropout_prob));
  }

  /** x [B, T, C]; keyMask [B, 1, 1, T] bool (true = attend) or null. */
  forward(x: Tensor, keyMask: Tensor | null): Tensor {
    const [B, T, C] = x.shape;
    const nh = this.c.num_attention_heads;
    const hs = C / nh;
    const heads = (t: Tensor): Tensor => t.reshape(B, T, nh, hs).permute(0, 2, 1, 3); // (B, nh, T, hs)
    const q = heads(this.query.forward(x));
    const k = heads(this.key.forward(x));
    const v = heads(this.value.forward(x));
    // one fused kernel (no [T, T] scores kept); a padding mask never masks a whole row here
    // (every sequence has a token), so −∞ and HF's finfo.min give the same weights
    const y = F.scaledDotProductAttention(q, k, v, {
      attnMask: keyMask,
      scale: 1 / Math.sqrt(hs),
      dropoutP: this.dropout.training ? this.dropout.p : 0,
      generator: this.dropout.generator,
    }); // (B, nh, T, hs)
    return y.permute(0, 2, 1, 3).reshape(B, T, C);
  }
}

/** dense → dropout → LayerNorm(x + residual) (BERT's *Output blocks). */
class AddNorm extends Module {
  dense: Layer;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(inDim: number, c: EncoderConfig) {
    super();
    this.dense = this.registerModule('dense', new Linear(inDim, c.hidden_size));
    this.LayerNorm = this.registerModule(
      'LayerNorm',
      new LayerNorm(c.hidden_size, { eps: c.layer_norm_eps }),
    );
    this.dropout = this.registerModule('dropout', new Dropout(c.hidden_dropout_prob));
  }
  forward(x: Tensor, residual: Tensor): Tensor {
    return this.LayerNorm.forward(this.dropout.forward(this.dense.forward(x)).add(residual));
  }
}

class Attention extends Module {
  readonly self: SelfAttention;
  readonly output: AddNorm;
  constructor(c: EncoderConfig) {
    super();
    this.self = this.registerModule('self', new SelfAttention(c));
    this.output = this.registerModule('output', new AddNorm(c.hidden_size, c));
  }
  forward(x: Tensor, keyMask: Tensor | null): Tensor {
    return this.output.forward(this.self.forward(x, keyMask), x);
  }
}

class Intermediate extends Module {
  dense: Layer;
  constructor(c: EncoderConfig) {
    super();
    this.dense = this.registerModule('dense', new Linear(c.hidden_size, c.intermediate_size));
  }
  forward(x: Tensor): Tensor {
    return this.dense.forward(x).gelu();
  }
}

/**
 * One post-LayerNorm encoder block: self-attention (`attention.self.query/key/value`, then
 * `attention.output`), then the feed-forward `intermediate` → `output`, with Hugging Face's names.
 */
export class EncoderLayer extends Module {
  /** Self-attention and its add & norm. */
  readonly attention: Attention;
  /** hidden → intermediate projection with GELU. */
  readonly intermediate: Intermediate;
  /** intermediate → hidden projection, dropout, add & norm. */
  readonly output: AddNorm;
  constructor(c: EncoderConfig) {
    super();
    this.attention = this.registerModule('attention', new Attention(c));
    this.intermediate = this.registerModule('intermediate', new Intermediate(c));
    this.output = this.registerModule('output', new AddNorm(c.intermediate_size, c));
  }
  /** x [B, T, C] → [B, T, C]; `keyMask` [B, 1, 1, T] bool (true = attend) or null. */
  forward(x: Tensor, keyMask: Tensor | null): Tensor {
    const a = this.attention.forward(x, keyMask);
    return this.output.forward(this.intermediate.forward(a), a);
  }
}

class Embeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(c: EncoderConfig) {
    super();
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(c.vocab_size, c.hidden_size));
    this.position_embeddings = this.registerModule(
      'position_embeddings',
      new Embedding(c.max_position_embeddings, c.hidden_size),
    );
    this.LayerNorm = this.registerModule(
      'LayerNorm',
      new LayerNorm(c.hidden_size, { eps: c.layer_norm_eps }),
    );
    this.dropout = this.registerModule('dropout', new Dropout(c.hidden_dropout_prob));
  }
  forward(ids: Tensor): Tensor {
    const pos = arange(0, ids.shape[1], 1, { dtype: 'int32', device: ids.device });
    const x = this.word_embeddings.forward(ids).add(this.position_embeddings.forward(pos));
    return this.dropout.forward(this.LayerNorm.forward(x));
  }
}

class Encoder extends Module {
  readonly layer: ModuleList<EncoderLayer>;
  constructor(c: EncoderConfig) {
    super();
    this.layer = this.registerModule(
      'layer',
      new ModuleList(Array.from({ length: c.num_hidden_layers }, () => new EncoderLayer(c))),
    );
  }
  forward(x: Tensor, keyMask: Tensor | null): Tensor {
    for (const l of this.layer) x = l.forward(x, keyMask);
    return x;
  }
}

/** The encoder body: embeddings (words + positions, LayerNorm) and the stack of `EncoderLayer`s. */
export class EncoderModel extends Module {
  /** Word and position embeddings with LayerNorm and dropout. */
  readonly embeddings: Embeddings;
  /** The layers (`encoder.layer.N`). */
  readonly encoder: Encoder;
  /** @param config The validated configuration. */
  constructor(readonly config: EncoderConfig) {
    super();
    this.embeddings = this.registerModule('embeddings', new Embeddings(config));
    this.encoder = this.registerModule('encoder', new Encoder(config));
  }
  /** ids [B, T] int32, attentionMask [B, T] (1 = token, 0 = padding) → [B, T, C]. */
  forward(ids: Tensor, attentionMask?: Tensor): Tensor {
    const [B, T] = ids.shape;
    const keyMask = attentionMask ? attentionMask.ne(0).reshape(B, 1, 1, T) : null;
    return this.encoder.forward(this.embeddings.forward(ids), keyMask);
  }
}

/** RoBERTa's head on the first token: dense → tanh → out_proj (dropout before each). */
export class ClassificationHead extends Module {
  /** hidden → hidden projection (then tanh). */
  dense: Layer;
  /** hidden → num_labels projection. */
  out_proj: Layer;
  /** Dropout before each projection. */
  readonly dropout: Dropout;
  constructor(c: EncoderConfig) {
    super();
    this.dense = this.registerModule('dense', new Linear(c.hidden_size, c.hidden_size));
    this.dropout = this.registerModule('dropout', new Dropout(c.hidden_dropout_prob));
    this.out_proj = this.registerModule('out_proj', new Linear(c.hidden_size, c.num_labels));
  }
  /** hidden [B, T, C] → logits [B, num_labels], from the first token's state. */
  forward(hidden: Tensor): Tensor {
    const first = hidden.slice(1, 0, 1).squeeze(1); // [B, C]: the <s>/[CLS] position
    const x = this.dense.forward(this.dropout.forward(first)).tanh();
    return this.out_proj.forward(this.dropout.forward(x));
  }
}

/**
 * Encoder + classification head (HF's `RobertaForSequenceClassification`).
 *
 * ```ts
 * const model = new EncoderForSequenceClassification({ vocab_size: 100, num_labels: 2 });
 * applyLora(model, { targetModules: ['query', 'value'], r: 8, modulesToSave: ['classifier'] });
 * const { logits, loss } = model.forward(ids, { labels });
 * ```
 */
export class EncoderForSequenceClassification extends Module {
  /** The validated configuration. */
  readonly config: EncoderConfig;
  /** The encoder body (RoBERTa's attribute name). */
  readonly roberta: EncoderModel;
  /** The classification head (train it in full with LoRA's `modulesToSave: ['classifier']`). */
  classifier: ClassificationHead;

  constructor(config: Partial<EncoderConfig> = {}, options: { seed?: number } = {}) {
    super();
    this.config = encoderConfig(config);
    this.roberta = this.registerModule('roberta', new EncoderModel(this.config));
    this.classifier = this.registerModule('classifier', new ClassificationHead(this.config));
    this.initWeights(options.seed ?? 0);
  }

  /** BERT's init: weights ~ N(0, initializer_range²), biases 0, LayerNorm weight 1. Seeded. */
  initWeights(seed = 0): this {
    const generator = new Generator(seed);
    for (const [name, p] of this.namedParameters()) {
      if (name.endsWith('LayerNorm.weight')) init.ones_(p);
      else if (name.endsWith('.bias')) init.zeros_(p);
      else init.normal_(p, 0, this.config.initializer_range, { generator });
    }
    return this;
  }

  /** ids [B, T] → logits [B, num_labels]; with int32 `labels` [B], the mean cross-entropy too. */
  forward(
    ids: Tensor,
    options: { attentionMask?: Tensor; labels?: Tensor } = {},
  ): {
    /** Class scores [B, num_labels]. */
    logits: Tensor;
    /** Mean cross-entropy against `labels` (when given). */
    loss?: Tensor;
  } {
    if (ids.rank !== 2 || ids.dtype !== 'int32') {
      throw new OpError(
        'EncoderForSequenceClassification',
        `ids must be int32 [B, T], got ${ids.dtype} [${ids.shape.join(',')}]`,
      );
    }
    if (ids.shape[1] > this.config.max_position_embeddings) {
      throw new OpError(
        'EncoderForSequenceClassification',
        `sequence length ${ids.shape[1]} exceeds max_position_embeddings ${this.config.max_position_embeddings}`,
      );
    }
    const logits = this.classifier.forward(this.roberta.forward(ids, options.attentionMask));
    return options.labels ? { logits, loss: F.crossEntropy(logits, options.labels) } : { logits };
  }
}
