import { type Device, embedding, type Generator, OpError, ones, type Tensor, zeros } from '@lowrank/tensor';
import * as F from './functional.js';
import * as init from './init.js';
import { composite } from './internal.js';
import { Module } from './module.js';

/** Where a layer's parameters are created and which generator initialises them. */
export interface LayerOptions {
  /** Device the parameters are created on (default: the default device). */
  device?: Device;
  /** Generator for the initialisation (default: the global one). */
  generator?: Generator;
}

/**
 * y = x·Wᵀ + b. Weight [out, in] and bias [out] as in PyTorch, initialised like PyTorch:
 * W ~ kaiming-uniform(a = √5) = U(±1/√in), b ~ U(±1/√in).
 *
 * @example
 * const fc = new Linear(3, 4, { generator: new Generator(0) });
 * fc.forward(x); // x [B, 3] → [B, 4]
 */
export class Linear extends Module {
  /** [outFeatures, inFeatures] (PyTorch's layout), Kaiming-uniform at init. */
  readonly weight: Tensor;
  /** [outFeatures], or null with `bias: false`. */
  readonly bias: Tensor | null;

  constructor(
    /** Input features (last dim of x). */
    readonly inFeatures: number,
    /** Output features. */
    readonly outFeatures: number,
    options: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter(
      'weight',
      init.kaimingUniform([outFeatures, inFeatures], { a: Math.sqrt(5), ...options }),
    );
    const bound = inFeatures > 0 ? 1 / Math.sqrt(inFeatures) : 0;
    this.bias = this.registerParameter(
      'bias',
      options.bias === false ? null : init.uniform([outFeatures], -bound, bound, options),
    );
  }

  /** `x · weightᵀ + bias` over the last dim of `x`. */
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }

  override extraRepr(): string {
    return `inFeatures=${this.inFeatures}, outFeatures=${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

/** A lookup table: int32 ids [...] → rows of weight [num, dim] → [..., dim]. Weight ~ N(0, 1). */
export class Embedding extends Module {
  /** [numEmbeddings, embeddingDim], N(0, 1) at init. */
  readonly weight: Tensor;

  constructor(
    /** Number of rows (the vocabulary size). */
    readonly numEmbeddings: number,
    /** Width of each row. */
    readonly embeddingDim: number,
    options: LayerOptions = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', init.normal([numEmbeddings, embeddingDim], 0, 1, options));
  }

  /** The rows at int32 `ids` (any shape) → [...ids.shape, embeddingDim]. */
  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }

  override extraRepr(): string {
    return `${this.numEmbeddings}, ${this.embeddingDim}`;
  }
}

function toShape(op: string, shape: number | readonly number[]): number[] {
  const s = typeof shape === 'number' ? [shape] : [...shape];
  if (s.length === 0 || s.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new OpError(op, `normalizedShape must be positive integers, got [${s.join(',')}]`);
  }
  return s;
}

/** Layer normalisation over the trailing dims; weight = 1, bias = 0 at init; eps 1e-5. */
export class LayerNorm extends Module {
  /** The trailing dims normalised over. */
  readonly normalizedShape: readonly number[];
  /** Scale [...normalizedShape] (1 at init), or null without elementwise affine. */
  readonly weight: Tensor | null;
  /** Shift [...normalizedShape] (0 at init), or null. */
  readonly bias: Tensor | null;
  /** Added to the variance for numerical stability. */
  readonly eps: number;

  constructor(
    normalizedShape: number | readonly number[],
    options: { eps?: number; elementwiseAffine?: boolean; bias?: boolean; device?: Device } = {},
  ) {
    super();
    this.normalizedShape = toShape('LayerNorm', normalizedShape);
    this.eps = options.eps ?? 1e-5;
    const affine = options.elementwiseAffine ?? true;
    const device = options.device;
    this.weight = this.registerParameter('weight', affine ? ones(this.normalizedShape, { device }) : null);
    this.bias = this.registerParameter(
      'bias',
      affine && options.bias !== false ? zeros(this.normalizedShape, { device }) : null,
    );
  }

  /** Normalises `x` over the trailing `normalizedShape` dims. */
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }

  override extraRepr(): string {
    return `[${this.normalizedShape.join(', ')}], eps=${this.eps}`;
  }
}

/** RMS normalisation (Llama's `RMSNorm`): weight = 1 at init; eps 1e-6 (Hugging Face's default). */
export class RMSNorm extends Module {
  /** The trailing dims normalised over. */
  readonly normalizedShape: readonly number[];
  /** Scale [...normalizedShape] (1 at init), or null. */
  readonly weight: Tensor | null;
  /** Added to the mean square for numerical stability. */
  readonly eps: number;

  constructor(
    normalizedShape: number | readonly number[],
    options: { eps?: number; elementwiseAffine?: boolean; device?: Device } = {},
  ) {
    super();
    this.normalizedShape = toShape('RMSNorm', normalizedShape);
    this.eps = options.eps ?? 1e-6;
    this.weight = this.registerParameter(
      'weight',
      options.elementwiseAffine === false ? null : ones(this.normalizedShape, { device: options.device }),
    );
  }

  /** Normalises `x` by its root mean square over the trailing `normalizedShape` dims. */
  forward(x: Tensor): Tensor {
    return F.rmsNorm(x, this.normalizedShape, this.weight, this.eps);
  }

  override extraRepr(): string {
    return `[${this.normalizedShape.join(', ')}], eps=${this.eps}`;
  }
}

/** Dropout with its own seeded generator (or the default one); the identity in eval mode. */
export class Dropout extends Module {
  /** Generator the masks are drawn from (undefined: the global one); set it to give a model its own stream. */
  generator: Generator | undefined;

  constructor(
    /** Probability of zeroing an element (survivors are scaled by 1/(1-p)). */
    readonly p = 0.5,
    options: { generator?: Generator } = {},
  ) {
    super();
    if (!(p >= 0 && p <= 1)) throw new OpError('Dropout', `p must be in [0, 1], got ${p}`);
    this.generator = options.generator;
  }

  /**
   * Zeroes elements with probability p and scales the rest by 1/(1-p) in training mode; `x` itself in eval mode.
   */
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training, { generator: this.generator });
  }

  override extraRepr(): string {
    return `p=${this.p}`;
  }
}

/** Returns its input unchanged (a placeholder, e.g. for a removed layer). */
export class Identity extends Module {
  /** Returns `x`. */
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** `max(x, 0)` as a module. */
export class ReLU extends Module {
  /** `max(x, 0)`. */
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** GELU: the exact erf form (`approximate: 'none'`, default) or GPT-2's tanh form. */
export class GELU extends Module {
  /** @param approximate `'none'` (exact erf form) or `'tanh'` (GPT-2's gelu_new). */
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }

  /** GELU of `x` in the chosen form. */
  forward(x: Tensor): Tensor {
    return x.gelu({ approximate: this.approximate });
  }

  override extraRepr(): string {
    return `approximate='${this.approximate}'`;
  }
}

/** SiLU (swish) `x·sigmoid(x)` as a module. */
export class SiLU extends Module {
  /** `x·sigmoid(x)`. */
  forward(x: Tensor): Tensor {
    return x.silu();
  }
}

/** `tanh(x)` as a module. */
export class Tanh extends Module {
  /** `tanh(x)`. */
  forward(x: Tensor): Tensor {
    return x.tanh();
  }
}

/** `sigmoid(x)` as a module. */
export class Sigmoid extends Module {
  /** `sigmoid(x)`. */
  forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}

/** Softmax along `dim` (default the last) as a module. */
export class Softmax extends Module {
  /** @param dim The dim normalised over (default -1). */
  constructor(readonly dim = -1) {
    super();
  }

  /** Softmax of `x` along `dim`. */
  forward(x: Tensor): Tensor {
    return x.softmax(this.dim);
  }
}

/** Activation names understood by `activation()` and `MLP`. */
export type Activation = 'relu' | 'gelu' | 'gelu_tanh' | 'silu' | 'tanh' | 'sigmoid';

/**
 * The activation module for a name ('gelu_tanh' is GPT-2's `gelu_new`).
 *
 * @example
 * activation('gelu_tanh').forward(lr.tensor([1])); // [0.841192]
 */
export function activation(name: Activation): Module & {
  /** Applies the activation. */
  forward(x: Tensor): Tensor;
} {
  switch (name) {
    case 'relu':
      return new ReLU();
    case 'gelu':
      return new GELU('none');
    case 'gelu_tanh':
      return new GELU('tanh');
    case 'silu':
      return new SiLU();
    case 'tanh':
      return new Tanh();
    case 'sigmoid':
      return new Sigmoid();
    default:
      throw new OpError('activation', `unknown activation '${String(name)}'`);
  }
}

/** Options of `MLP`. */
export interface MLPOptions extends LayerOptions {
  /** Hidden width (default 4·in). */
  hiddenFeatures?: number;
  /** Output width (default in). */
  outFeatures?: number;
  /** Default 'gelu_tanh' (GPT-2). */
  activation?: Activation;
  /** Biases on both projections (default true). */
  bias?: boolean;
  /** Dropout probability on the output (default 0). */
  dropout?: number;
}

/**
 * The transformer feed-forward block, named as in GPT-2/nanoGPT:
 * c_fc (in → hidden) → activation → c_proj (hidden → out) → dropout.
 */
export class MLP extends Module {
  /** in → hidden projection. */
  readonly c_fc: Linear;
  /** The activation. */
  readonly act: Module & {
    /** Applies the activation. */
    forward(x: Tensor): Tensor;
  };
  /** hidden → out projection. */
  readonly c_proj: Linear;
  /** Dropout on the output. */
  readonly dropout: Dropout;

  constructor(inFeatures: number, options: MLPOptions = {}) {
    super();
    const hidden = options.hiddenFeatures ?? 4 * inFeatures;
    const out = options.outFeatures ?? inFeatures;
    this.c_fc = this.registerModule('c_fc', new Linear(inFeatures, hidden, options));
    this.act = this.registerModule('act', activation(options.activation ?? 'gelu_tanh'));
    this.c_proj = this.registerModule('c_proj', new Linear(hidden, out, options));
    this.dropout = this.registerModule('dropout', new Dropout(options.dropout ?? 0, options));
  }

  /** c_fc → activation → c_proj → dropout. */
  forward(x: Tensor): Tensor {
    return composite([x, ...this.parameters()], () =>
      this.dropout.forward(this.c_proj.forward(this.act.forward(this.c_fc.forward(x)))),
    );
  }
}
