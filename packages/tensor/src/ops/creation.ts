import { type DType, dtypeOfArray, isDType, type TypedArray, typedArrayFor } from '../dtype.js';
import { hostUpload } from '../engine/capture.js';
import { constValue, lazyStorage } from '../engine/lazy.js';
import { getBackend, getDefaultDevice } from '../engine/registry.js';
import { fmtShape, OpError } from '../errors.js';
import type { ElementwiseProgram, Expr, RandomDist } from '../expr/program.js';
import { defaultGenerator, drawRandomKey, type Generator } from '../random.js';
import { assertShape, contiguousStrides, sizeOf } from '../shape.js';
import type { Device } from '../storage.js';
import type { NestedArray, Tensor } from '../tensor.js';
import { wrap } from './util.js';

/** Options of the tensor factories. */
export interface TensorOptions {
  /** Element type (default: float32 for numbers, bool for booleans, a typed array's own type). */
  dtype?: DType;
  /** Where the tensor lives (default: `getDefaultDevice()`, set by `init`). */
  device?: Device;
  /** Marks the new tensor as a leaf that receives gradients. */
  requiresGrad?: boolean;
}

/** Options of the random factories: a tensor's options and the generator to draw from. */
export interface RandomOptions extends TensorOptions {
  /** Generator to draw from (default: the global one, seeded by `manualSeed`). */
  generator?: Generator;
}

function finish(t: Tensor, options: TensorOptions): Tensor {
  if (options.requiresGrad) t.requiresGrad_(true);
  return t;
}

/**
 * Uploads a host array as a new tensor of `shape`.
 *
 * @example
 * lr.fromTypedArray(new Int32Array([1, 2, 3, 4]), [2, 2]); // [[1, 2], [3, 4]] (int32)
 */
export function fromTypedArray(
  values: TypedArray,
  shape: readonly number[],
  options: TensorOptions = {},
): Tensor {
  const dtype = options.dtype ?? dtypeOfArray(values);
  const device = options.device ?? getDefaultDevice();
  if (values.length !== sizeOf(shape)) {
    throw new OpError(
      'tensor',
      `shape ${fmtShape(shape)} needs ${sizeOf(shape)} values, got ${values.length}`,
    );
  }
  const typed = dtypeOfArray(values) === dtype ? values : convert(values, dtype);
  return finish(wrap(getBackend(device).upload(typed, dtype), shape), options);
}

/**
 * A tensor whose values the host computes per call: `compute()` returns them (as many as
 * `shape` holds) and they are uploaded. Eagerly that is `fromTypedArray(compute(), shape)`; in a
 * function compiled with `lr.compile`, each replay calls `compute` again and uploads its result,
 * where a plain upload would be a constant of the capture. Random tensors and dropout masks are
 * made this way.
 *
 * @example
 * const gen = new lr.Generator(0);
 * const noise = lr.hostTensor(() => {
 *   const a = new Float32Array(4);
 *   gen.fillUniform(a);
 *   return a;
 * }, [4]);
 */
export function hostTensor(
  compute: () => TypedArray,
  shape: readonly number[],
  options: TensorOptions = {},
): Tensor {
  assertShape('hostTensor', shape);
  let dtype = options.dtype;
  const typed = hostUpload(() => {
    const values = compute();
    if (values.length !== sizeOf(shape)) {
      throw new OpError(
        'hostTensor',
        `shape ${fmtShape(shape)} needs ${sizeOf(shape)} values, got ${values.length}`,
      );
    }
    dtype ??= dtypeOfArray(values);
    return dtypeOfArray(values) === dtype ? values : convert(values, dtype);
  });
  return fromTypedArray(typed, shape, { ...options, dtype });
}

function convert(values: ArrayLike<number>, dtype: DType): TypedArray {
  const out = typedArrayFor(dtype, values.length);
  if (dtype === 'bool') for (let i = 0; i < values.length; i++) out[i] = values[i] ? 1 : 0;
  else if (dtype === 'int32') for (let i = 0; i < values.length; i++) out[i] = Math.trunc(values[i]);
  else out.set(values);
  return out;
}

/**
 * Creates a tensor from nested arrays, a typed array or a scalar. Without `dtype`, JS numbers give
 * float32 (JS cannot tell 1 from 1.0: pass `dtype: 'int32'` for integers), booleans give bool, and
 * typed arrays keep their own dtype (Float32Array, Int32Array, Uint8Array = bool).
 *
 * @example
 * lr.tensor([[1, 2], [3, 4]]).shape; // [2, 2]
 * lr.tensor([1, 2], { dtype: 'int32' }).dtype; // "int32"
 * lr.tensor(3); // a 0-d tensor
 */
export function tensor(
  values: NestedArray | TypedArray | readonly NestedArray[],
  options: TensorOptions & { shape?: readonly number[] } = {},
): Tensor {
  if (options.dtype !== undefined && !isDType(options.dtype)) {
    throw new OpError('tensor', `unknown dtype '${String(options.dtype)}' (expected float32, int32 or bool)`);
  }
  if (ArrayBuffer.isView(values)) {
    const typed = values as TypedArray;
    return fromTypedArray(typed, options.shape ?? [typed.length], options);
  }
  const shape: number[] = [];
  let probe: unknown = values;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const flat: (number | boolean)[] = [];
  flatten(values as NestedArray, shape, 0, flat);
  const inferred: DType = flat.length > 0 && typeof flat[0] === 'boolean' ? 'bool' : 'float32';
  const dtype = options.dtype ?? inferred;
  const typed = typedArrayFor(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    typed[i] = dtype === 'bool' ? (v ? 1 : 0) : dtype === 'int32' ? Math.trunc(Number(v)) : Number(v);
  }
  const finalShape = options.shape ?? shape;
  return fromTypedArray(typed, finalShape, { ...options, dtype });
}

function flatten(v: NestedArray, shape: readonly number[], depth: number, out: (number | boolean)[]): void {
  if (depth === shape.length) {
    if (Array.isArray(v)) throw new OpError('tensor', `ragged nested array: too deep at depth ${depth}`);
    if (typeof v !== 'number' && typeof v !== 'boolean') {
      throw new OpError('tensor', `expected numbers or booleans, got ${typeof v}`);
    }
    out.push(v);
    return;
  }
  if (!Array.isArray(v) || v.length !== shape[depth]) {
    const got = Array.isArray(v) ? `length ${v.length}` : typeof v;
    throw new OpError(
      'tensor',
      `ragged nested array: expected length ${shape[depth]} at depth ${depth}, got ${got}`,
    );
  }
  for (const x of v) flatten(x, shape, depth + 1, out);
}

/**
 * A tensor of `shape` filled with `value`.
 *
 * @example
 * lr.full([2], 7); // [7, 7]
 */
export function full(shape: readonly number[], value: number | boolean, options: TensorOptions = {}): Tensor {
  assertShape('full', shape);
  const dtype = options.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32');
  const device = options.device ?? getDefaultDevice();
  getBackend(device); // throws for a device with no backend
  // a constant program: no host array and no upload. The backend decides how to materialise it
  // when it is needed (a fill kernel on WebGPU); a consumer that fuses it reads a kernel constant.
  const program: ElementwiseProgram = {
    root: { kind: 'const', index: 0, dtype },
    inputs: [],
    consts: [constValue(value, dtype)],
    shape,
  };
  return finish(wrap(lazyStorage('full', device, program), shape), options);
}

/**
 * A tensor of `shape` filled with 0.
 *
 * @example
 * lr.zeros([2, 3]).shape; // [2, 3]
 */
export function zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return full(shape, 0, options);
}

/**
 * A tensor of `shape` filled with 1.
 *
 * @example
 * lr.ones([2], { dtype: 'int32' }); // [1, 1]
 */
export function ones(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return full(shape, 1, options);
}

/**
 * Zeros with the shape, dtype and device of `t` (unless `options` say otherwise).
 *
 * @example
 * lr.zerosLike(lr.tensor([[1, 2]])); // [[0, 0]]
 */
export function zerosLike(t: Tensor, options: TensorOptions = {}): Tensor {
  return full(t.shape, 0, { dtype: t.dtype, device: t.device, ...options });
}

/**
 * Ones with the shape, dtype and device of `t` (unless `options` say otherwise).
 *
 * @example
 * lr.onesLike(lr.tensor([5, 6])); // [1, 1]
 */
export function onesLike(t: Tensor, options: TensorOptions = {}): Tensor {
  return full(t.shape, 1, { dtype: t.dtype, device: t.device, ...options });
}

/**
 * `value` everywhere, with the shape, dtype and device of `t` (unless `options` say otherwise).
 *
 * @example
 * lr.fullLike(lr.tensor([5, 6]), 2); // [2, 2]
 */
export function fullLike(t: Tensor, value: number, options: TensorOptions = {}): Tensor {
  return full(t.shape, value, { dtype: t.dtype, device: t.device, ...options });
}

/**
 * Values start, start+step, … below end (like torch.arange); `arange(n)` is 0..n-1.
 *
 * @example
 * lr.arange(4); // [0, 1, 2, 3]
 * lr.arange(1, 2, 0.25); // [1, 1.25, 1.5, 1.75]
 */
export function arange(start: number, end?: number, step = 1, options: TensorOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step))
    throw new OpError('arange', `step must be finite and non-zero, got ${step}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const allInt = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  const dtype = options.dtype ?? (allInt ? 'int32' : 'float32');
  const typed = typedArrayFor(dtype, n);
  for (let i = 0; i < n; i++) typed[i] = start + i * step;
  return fromTypedArray(typed, [n], { ...options, dtype });
}

/**
 * Identity matrix n×m (m defaults to n).
 *
 * @example
 * lr.eye(2); // [[1, 0], [0, 1]]
 */
export function eye(n: number, m = n, options: TensorOptions = {}): Tensor {
  assertShape('eye', [n, m]);
  const dtype = options.dtype ?? 'float32';
  const typed = typedArrayFor(dtype, n * m);
  for (let i = 0; i < Math.min(n, m); i++) typed[i * m + i] = 1;
  return fromTypedArray(typed, [n, m], { ...options, dtype });
}

function floatOnly(op: string, dtype: DType | undefined): void {
  if (dtype !== undefined && dtype !== 'float32')
    throw new OpError(op, `dtype must be float32, got ${dtype}`);
}

/** Elements a device draw may hold: positions are 32-bit counters (philox.ts) and int32 offsets. */
const MAX_DRAW = 2 ** 31 - 1;

/**
 * A lazy float32 tensor of `shape` whose element i is Philox draw i (philox.ts) under a key
 * drawn from the generator now, mapped by `value` (which receives the random node and returns
 * the element's expression; `consts` are the constants it reads). No host array, no upload: the
 * elementwise kernel that computes or consumes it (dropout's multiply, say) evaluates it.
 */
function deviceRandom(
  op: string,
  shape: readonly number[],
  dist: RandomDist,
  options: RandomOptions,
  value: (r: Expr) => Expr = (r) => r,
  consts: readonly number[] = [],
): Tensor {
  assertShape(op, shape);
  floatOnly(op, options.dtype);
  if (sizeOf(shape) > MAX_DRAW) {
    throw new OpError(op, `a random tensor holds at most ${MAX_DRAW} elements, got ${fmtShape(shape)}`);
  }
  const device = options.device ?? getDefaultDevice();
  getBackend(device); // throws for a device with no backend
  const key = drawRandomKey(options.generator ?? defaultGenerator());
  const program: ElementwiseProgram = {
    root: value({ kind: 'random', index: 0, dist, dtype: 'float32' }),
    inputs: [],
    consts,
    shape,
    rng: [{ key, strides: contiguousStrides(shape), offset: 0 }],
  };
  return finish(wrap(lazyStorage(op, device, program), shape), options);
}

const f32Const = (index: number): Expr => ({ kind: 'const', index, dtype: 'float32' });
const f32Op = (op: 'add' | 'mul', a: Expr, b: Expr): Expr => ({
  kind: 'op',
  op,
  args: [a, b],
  dtype: 'float32',
});

/**
 * Uniform U[0, 1) from the (seedable) generator, computed on the tensor's device: element i is
 * `lr.philoxUniform(i, key0, key1)` for a key of two `nextUint32` words of the generator, the
 * same bits on every backend. The tensor stays lazy, so a consumer's kernel (a dropout multiply)
 * computes it in place.
 *
 * @example
 * lr.manualSeed(0);
 * lr.rand([2, 2]).shape; // [2, 2], values in [0, 1)
 */
export function rand(shape: readonly number[], options: RandomOptions = {}): Tensor {
  return deviceRandom('rand', shape, 'uniform', options);
}

/**
 * Uniform U[low, high): `low + (high − low)·u` of `rand`'s u, in float32.
 *
 * @example
 * lr.uniform([3], -0.1, 0.1).shape; // [3], values in [-0.1, 0.1)
 */
export function uniform(
  shape: readonly number[],
  low: number,
  high: number,
  options: RandomOptions = {},
): Tensor {
  if (!Number.isFinite(low) || !Number.isFinite(high)) {
    throw new OpError('uniform', `low and high must be finite, got low=${low}, high=${high}`);
  }
  const consts = [Math.fround(low), Math.fround(high - low)];
  const value = (r: Expr) => f32Op('add', f32Const(0), f32Op('mul', f32Const(1), r));
  return deviceRandom('uniform', shape, 'uniform', options, value, consts);
}

/**
 * Standard normal N(0, 1) (or N(mean, std²)), computed on the tensor's device: Box–Muller of the
 * first two Philox words of each element (`lr.philoxNormal`); GPU and CPU agree to float32
 * precision (their log and cos differ by ulps).
 *
 * @example
 * const w = lr.randn([64, 64], { requiresGrad: true });
 */
export function randn(
  shape: readonly number[],
  options: RandomOptions & { mean?: number; std?: number } = {},
): Tensor {
  const { mean = 0, std = 1 } = options;
  if (!Number.isFinite(mean) || !Number.isFinite(std)) {
    throw new OpError('randn', `mean and std must be finite, got mean=${mean}, std=${std}`);
  }
  if (mean === 0 && std === 1) return deviceRandom('randn', shape, 'normal', options);
  const value = (r: Expr) => f32Op('add', f32Const(0), f32Op('mul', f32Const(1), r));
  return deviceRandom('randn', shape, 'normal', options, value, [Math.fround(mean), Math.fround(std)]);
}

/**
 * Uniform integers in [low, high) as int32.
 *
 * @example
 * lr.randint(0, 10, [4]).dtype; // "int32"
 */
export function randint(
  low: number,
  high: number,
  shape: readonly number[],
  options: RandomOptions = {},
): Tensor {
  assertShape('randint', shape);
  if (!Number.isInteger(low) || !Number.isInteger(high) || high <= low) {
    throw new OpError('randint', `expected integers low < high, got low=${low}, high=${high}`);
  }
  const gen = options.generator ?? defaultGenerator();
  const n = sizeOf(shape);
  const draw = () => {
    const values = new Int32Array(n);
    for (let i = 0; i < n; i++) values[i] = gen.nextInt(low, high);
    return values;
  };
  return hostTensor(draw, shape, { ...options, dtype: options.dtype ?? 'int32' });
}

/** A 0-d tensor holding `value` on `device` (internal helper for number operands). */
export function scalar(value: number | boolean, dtype: DType, device: Device): Tensor {
  return full([], value, { dtype, device });
}
