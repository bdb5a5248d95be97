import {
  type Device,
  defaultGenerator,
  fromTypedArray,
  type Generator,
  OpError,
  type Tensor,
  zeros,
} from '@lowrank/tensor';
import { fmtShape, noGrad } from './internal.js';

/**
 * Parameter initialisers, PyTorch's `torch.nn.init` with the seeded generator. Values are drawn
 * on the host (so a seed gives the same parameters on every backend) and written in place under
 * `noGrad`. Each `xxx_` fills an existing tensor and returns it; `xxx(shape, …)` makes a new one.
 *
 * @example
 * const w = zeros([8, 4]);
 * nn.init.kaimingUniform_(w, { a: Math.sqrt(5), generator: new Generator(0) }); // Linear's default
 */

/** Options of the in-place initialisers. */
export interface InitOptions {
  /** Generator to draw from (default: the global one). */
  generator?: Generator;
}

/** Options of the initialisers that create a tensor. */
export interface CreateOptions extends InitOptions {
  /** Device of the new tensor (default: the default device). */
  device?: Device;
}

/** Nonlinearities `calculateGain` knows (PyTorch's names). */
export type Nonlinearity = 'linear' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'conv2d';

/**
 * fan_in and fan_out of a weight shaped like PyTorch's ([out, in, ...kernel]).
 *
 * @example
 * nn.init.calculateFanInAndFanOut([4, 3]); // { fanIn: 3, fanOut: 4 }
 */
export function calculateFanInAndFanOut(shape: readonly number[]): {
  /** Inputs per output unit: `in · receptive field`. */
  fanIn: number;
  /** Outputs per input unit: `out · receptive field`. */
  fanOut: number;
} {
  if (shape.length < 2) {
    throw new OpError('init', `fan in and fan out need at least 2 dims, got ${fmtShape(shape)}`);
  }
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
}

/**
 * The recommended gain for a nonlinearity (`param` is leaky_relu's negative slope, default 0.01).
 *
 * @example
 * nn.init.calculateGain('relu'); // 1.4142 (√2)
 */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'conv2d':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
  }
}

let skipping = 0;

/**
 * Runs `fn` with every initialiser of this module switched off: the in-place ones (`normal_`,
 * `ones_`, …) leave their tensor as it is, the creating ones (what layers call) return lazy zeros (no memory until written),
 * and no generator is drawn from. For a model whose weights are about to be overwritten by a
 * checkpoint (loaders build it this way): the random values would be computed for nothing.
 *
 * @example
 * const layer = nn.init.withoutInit(() => new nn.Linear(4096, 4096)); // zeros, nothing drawn
 */
export function withoutInit<T>(fn: () => T): T {
  skipping++;
  try {
    return fn();
  } finally {
    skipping--;
  }
}

function write(t: Tensor, values: Float32Array): Tensor {
  if (t.dtype !== 'float32') throw new OpError('init', `expected a float32 tensor, got ${t.dtype}`);
  noGrad(() => {
    const src = fromTypedArray(values, t.shape, { device: t.device });
    t.copy_(src);
    src.dispose();
  });
  return t;
}

function gen(options: InitOptions): Generator {
  return options.generator ?? defaultGenerator();
}

/**
 * Fills with U[low, high).
 *
 * @example
 * nn.init.uniform_(lr.zeros([3]), -0.1, 0.1); // values in [-0.1, 0.1)
 */
export function uniform_(t: Tensor, low = 0, high = 1, options: InitOptions = {}): Tensor {
  if (skipping > 0) return t;
  const v = new Float32Array(t.size);
  gen(options).fillUniform(v, low, high);
  return write(t, v);
}

/**
 * Fills with N(mean, std²).
 *
 * @example
 * nn.init.normal_(lr.zeros([3]), 0, 0.02); // GPT-2's weight init
 */
export function normal_(t: Tensor, mean = 0, std = 1, options: InitOptions = {}): Tensor {
  if (skipping > 0) return t;
  const v = new Float32Array(t.size);
  gen(options).fillNormal(v, mean, std);
  return write(t, v);
}

/**
 * Fills with `value` (in place, without recording). Returns `t`.
 *
 * @example
 * nn.init.constant_(lr.zeros([2]), 3); // [3, 3]
 */
export function constant_(t: Tensor, value: number): Tensor {
  if (skipping > 0) return t;
  return write(t, new Float32Array(t.size).fill(value));
}

/**
 * Fills with 0 (in place, without recording). Returns `t`.
 *
 * @example
 * nn.init.zeros_(lr.ones([2])); // [0, 0]
 */
export function zeros_(t: Tensor): Tensor {
  return constant_(t, 0);
}

/**
 * Fills with 1 (in place, without recording). Returns `t`.
 *
 * @example
 * nn.init.ones_(lr.zeros([2])); // [1, 1]
 */
export function ones_(t: Tensor): Tensor {
  return constant_(t, 1);
}

export interface KaimingOptions extends InitOptions {
  /** Negative slope of the rectifier after this layer (leaky_relu), default 0. */
  a?: number;
  /** Preserve the variance of the forward pass (`fanIn`, default) or of the backward pass (`fanOut`). */
  mode?: 'fanIn' | 'fanOut';
  /** The nonlinearity after this layer (default `leaky_relu`, as PyTorch). */
  nonlinearity?: Nonlinearity;
}

function kaimingStd(shape: readonly number[], options: KaimingOptions): number {
  const { fanIn, fanOut } = calculateFanInAndFanOut(shape);
  const fan = (options.mode ?? 'fanIn') === 'fanIn' ? fanIn : fanOut;
  const gain = calculateGain(options.nonlinearity ?? 'leaky_relu', options.a ?? 0);
  return gain / Math.sqrt(fan);
}

/**
 * He-uniform: U(−b, b) with b = gain·√(3/fan). `Linear` uses `a: √5`, which gives b = 1/√fan_in.
 *
 * @example
 * nn.init.kaimingUniform_(lr.zeros([4, 3]), { a: Math.sqrt(5) }); // Linear's default: U(±1/√3)
 */
export function kaimingUniform_(t: Tensor, options: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(t.shape, options);
  return uniform_(t, -bound, bound, options);
}

/**
 * He-normal: N(0, (gain/√fan)²).
 *
 * @example
 * nn.init.kaimingNormal_(lr.zeros([4, 3]), { nonlinearity: 'relu' }); // N(0, 2/3)
 */
export function kaimingNormal_(t: Tensor, options: KaimingOptions = {}): Tensor {
  return normal_(t, 0, kaimingStd(t.shape, options), options);
}

/**
 * Glorot-uniform: U(−b, b) with b = gain·√(6/(fan_in + fan_out)).
 *
 * @example
 * nn.init.xavierUniform_(lr.zeros([4, 3])); // U(±√(6/7))
 */
export function xavierUniform_(t: Tensor, options: InitOptions & { gain?: number } = {}): Tensor {
  const { fanIn, fanOut } = calculateFanInAndFanOut(t.shape);
  const bound = (options.gain ?? 1) * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -bound, bound, options);
}

/**
 * Glorot-normal: N(0, gain²·2/(fan_in + fan_out)).
 *
 * @example
 * nn.init.xavierNormal_(lr.zeros([4, 3])); // N(0, 2/7)
 */
export function xavierNormal_(t: Tensor, options: InitOptions & { gain?: number } = {}): Tensor {
  const { fanIn, fanOut } = calculateFanInAndFanOut(t.shape);
  return normal_(t, 0, (options.gain ?? 1) * Math.sqrt(2 / (fanIn + fanOut)), options);
}

// ---- creating forms (what the layers use)

function create(shape: readonly number[], fill: (v: Float32Array) => void, options: CreateOptions): Tensor {
  // skipped: lazy zeros, which hold no memory until written, so a loader that replaces a layer
  // (a quantized or 16-bit base weight) never allocates its float32 weight at all
  if (skipping > 0) return zeros(shape, { device: options.device });
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fill(v);
  return fromTypedArray(v, shape, { device: options.device });
}

/**
 * A new tensor U[low, high).
 *
 * @example
 * nn.init.uniform([2, 2], -1, 1).shape; // [2, 2]
 */
export function uniform(
  shape: readonly number[],
  low: number,
  high: number,
  options: CreateOptions = {},
): Tensor {
  return create(shape, (v) => gen(options).fillUniform(v, low, high), options);
}

/**
 * A new tensor N(mean, std²).
 *
 * @example
 * nn.init.normal([2, 2], 0, 0.02).shape; // [2, 2]
 */
export function normal(shape: readonly number[], mean = 0, std = 1, options: CreateOptions = {}): Tensor {
  return create(shape, (v) => gen(options).fillNormal(v, mean, std), options);
}

/**
 * A new tensor with `kaimingUniform_`'s distribution.
 *
 * @example
 * nn.init.kaimingUniform([8, 4], { a: Math.sqrt(5) }).shape; // [8, 4]
 */
export function kaimingUniform(
  shape: readonly number[],
  options: KaimingOptions & CreateOptions = {},
): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(shape, options);
  return uniform(shape, -bound, bound, options);
}

/**
 * A new tensor with `xavierUniform_`'s distribution.
 *
 * @example
 * nn.init.xavierUniform([8, 4]).shape; // [8, 4]
 */
export function xavierUniform(
  shape: readonly number[],
  options: CreateOptions & { gain?: number } = {},
): Tensor {
  const { fanIn, fanOut } = calculateFanInAndFanOut(shape);
  const bound = (options.gain ?? 1) * Math.sqrt(6 / (fanIn + fanOut));
  return uniform(shape, -bound, bound, options);
}
