import {
  type Device,
  defaultGenerator,
  fromTypedArray,
  type Generator,
  OpError,
  type Tensor,
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

export interface InitOptions {
  generator?: Generator;
}

export interface CreateOptions extends InitOptions {
  device?: Device;
}

export type Nonlinearity = 'linear' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'conv2d';

/** fan_in and fan_out of a weight shaped like PyTorch's ([out, in, ...kernel]). */
export function calculateFanInAndFanOut(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) {
    throw new OpError('init', `fan in and fan out need at least 2 dims, got ${fmtShape(shape)}`);
  }
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
}

/** The recommended gain for a nonlinearity (`param` is leaky_relu's negative slope, default 0.01). */
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

/** Fills with U[low, high). */
export function uniform_(t: Tensor, low = 0, high = 1, options: InitOptions = {}): Tensor {
  const v = new Float32Array(t.size);
  gen(options).fillUniform(v, low, high);
  return write(t, v);
}

/** Fills with N(mean, std²). */
export function normal_(t: Tensor, mean = 0, std = 1, options: InitOptions = {}): Tensor {
  const v = new Float32Array(t.size);
  gen(options).fillNormal(v, mean, std);
  return write(t, v);
}

export function constant_(t: Tensor, value: number): Tensor {
  return write(t, new Float32Array(t.size).fill(value));
}

export function zeros_(t: Tensor): Tensor {
  return constant_(t, 0);
}

export function ones_(t: Tensor): Tensor {
  return constant_(t, 1);
}

export interface KaimingOptions extends InitOptions {
  /** Negative slope of the rectifier after this layer (leaky_relu), default 0. */
  a?: number;
  mode?: 'fanIn' | 'fanOut';
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
 */
export function kaimingUniform_(t: Tensor, options: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(t.shape, options);
  return uniform_(t, -bound, bound, options);
}

/** He-normal: N(0, (gain/√fan)²). */
export function kaimingNormal_(t: Tensor, options: KaimingOptions = {}): Tensor {
  return normal_(t, 0, kaimingStd(t.shape, options), options);
}

/** Glorot-uniform: U(−b, b) with b = gain·√(6/(fan_in + fan_out)). */
export function xavierUniform_(t: Tensor, options: InitOptions & { gain?: number } = {}): Tensor {
  const { fanIn, fanOut } = calculateFanInAndFanOut(t.shape);
  const bound = (options.gain ?? 1) * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -bound, bound, options);
}

/** Glorot-normal: N(0, gain²·2/(fan_in + fan_out)). */
export function xavierNormal_(t: Tensor, options: InitOptions & { gain?: number } = {}): Tensor {
  const { fanIn, fanOut } = calculateFanInAndFanOut(t.shape);
  return normal_(t, 0, (options.gain ?? 1) * Math.sqrt(2 / (fanIn + fanOut)), options);
}

// ---- creating forms (what the layers use)

function create(shape: readonly number[], fill: (v: Float32Array) => void, options: CreateOptions): Tensor {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fill(v);
  return fromTypedArray(v, shape, { device: options.device });
}

/** A new tensor U[low, high). */
export function uniform(
  shape: readonly number[],
  low: number,
  high: number,
  options: CreateOptions = {},
): Tensor {
  return create(shape, (v) => gen(options).fillUniform(v, low, high), options);
}

/** A new tensor N(mean, std²). */
export function normal(shape: readonly number[], mean = 0, std = 1, options: CreateOptions = {}): Tensor {
  return create(shape, (v) => gen(options).fillNormal(v, mean, std), options);
}

/** A new tensor with `kaimingUniform_`'s distribution. */
export function kaimingUniform(
  shape: readonly number[],
  options: KaimingOptions & CreateOptions = {},
): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(shape, options);
  return uniform(shape, -bound, bound, options);
}

/** A new tensor with `xavierUniform_`'s distribution. */
export function xavierUniform(
  shape: readonly number[],
  options: CreateOptions & { gain?: number } = {},
): Tensor {
  const { fanIn, fanOut } = calculateFanInAndFanOut(shape);
  const bound = (options.gain ?? 1) * Math.sqrt(6 / (fanIn + fanOut));
  return uniform(shape, -bound, bound, options);
}
