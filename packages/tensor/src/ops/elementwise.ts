import type { BinaryOp, UnaryOp } from '../backend.js';
import { type DType, promoteTypes, scalarDType } from '../dtype.js';
import { runOp } from '../engine.js';
import { OpError } from '../errors.js';
import { broadcastShapes, broadcastStrides } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { scalar } from './creation.js';
import { kernel, type TensorLike, viewAs, wrap } from './util.js';

// ---- unary ---------------------------------------------------------------------------------

/** Ops that turn int/bool inputs into float32 (like PyTorch's exp(int) → float). */
const FLOAT_RESULT = new Set<UnaryOp>([
  'exp',
  'log',
  'sqrt',
  'rsqrt',
  'tanh',
  'sigmoid',
  'geluTanh',
  'geluErf',
  'silu',
  'reciprocal',
  'sin',
  'cos',
]);

function unary(name: string, op: UnaryOp, x: Tensor, attrs: object = {}): Tensor {
  return runOp(name, [x], attrs, () => {
    if (op === 'logicalNot') return wrap(kernel(name, x, 'unary')(op, x.view_(), 'bool'), x.shape);
    if (x.dtype === 'bool' && !FLOAT_RESULT.has(op)) {
      throw new OpError(name, 'expected a float32 or int32 tensor, got bool');
    }
    const input = FLOAT_RESULT.has(op) && x.dtype !== 'float32' ? cast(x, 'float32') : x;
    const out = wrap(kernel(name, x, 'unary')(op, input.view_(), input.dtype), x.shape);
    if (input !== x) input.dispose();
    return out;
  });
}

export const neg = (x: Tensor) => unary('neg', 'neg', x);
export const abs = (x: Tensor) => unary('abs', 'abs', x);
export const exp = (x: Tensor) => unary('exp', 'exp', x);
export const log = (x: Tensor) => unary('log', 'log', x);
export const sqrt = (x: Tensor) => unary('sqrt', 'sqrt', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', 'rsqrt', x);
export const tanh = (x: Tensor) => unary('tanh', 'tanh', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', 'sigmoid', x);
export const relu = (x: Tensor) => unary('relu', 'relu', x);
export const silu = (x: Tensor) => unary('silu', 'silu', x);
export const sign = (x: Tensor) => unary('sign', 'sign', x);
export const square = (x: Tensor) => unary('square', 'square', x);
export const reciprocal = (x: Tensor) => unary('reciprocal', 'reciprocal', x);
export const sin = (x: Tensor) => unary('sin', 'sin', x);
export const cos = (x: Tensor) => unary('cos', 'cos', x);
export const floor = (x: Tensor) => unary('floor', 'floor', x);
export const ceil = (x: Tensor) => unary('ceil', 'ceil', x);
export const round = (x: Tensor) => unary('round', 'round', x);
export const logicalNot = (x: Tensor) => unary('logicalNot', 'logicalNot', x);

/** GELU: exact `x·Φ(x)` (approximate 'none', default) or the tanh form GPT-2 calls gelu_new. */
export function gelu(x: Tensor, options: { approximate?: 'tanh' | 'none' } = {}): Tensor {
  const approximate = options.approximate ?? 'none';
  if (approximate !== 'tanh' && approximate !== 'none') {
    throw new OpError('gelu', `approximate must be 'tanh' or 'none', got '${String(approximate)}'`);
  }
  return unary('gelu', approximate === 'tanh' ? 'geluTanh' : 'geluErf', x, { approximate });
}

/** Converts to `dtype` (returns `x` itself when it already has that dtype). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return runOp('cast', [x], { dtype }, () => wrap(kernel('cast', x, 'cast')(x.view_(), dtype), x.shape));
}

// ---- binary --------------------------------------------------------------------------------

const COMPARISON = new Set<BinaryOp>(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);
const LOGICAL = new Set<BinaryOp>(['logicalAnd', 'logicalOr']);

/** Turns number/boolean operands into 0-d tensors next to the tensor operand. */
function toTensors(
  op: string,
  operands: readonly TensorLike[],
  fallback?: Tensor,
): { tensors: Tensor[]; owned: Tensor[] } {
  // `fallback` places all-scalar operands (where(cond, 1, 0)) on the device of another input
  const ref = operands.find((o): o is Tensor => typeof o === 'object') ?? fallback;
  if (!ref) throw new OpError(op, 'expected at least one tensor operand');
  let dtype: DType | null = null;
  for (const o of operands) if (typeof o === 'object') dtype = dtype ? promoteTypes(dtype, o.dtype) : o.dtype;
  const owned: Tensor[] = [];
  const tensors = operands.map((o) => {
    if (typeof o === 'object') return o;
    if (typeof o === 'number' && Number.isNaN(o) && dtype !== 'float32') {
      throw new OpError(op, `NaN operand next to a ${dtype} tensor`);
    }
    const s = scalar(o, scalarDType(o, dtype ?? 'float32'), ref.device);
    owned.push(s);
    return s;
  });
  return { tensors, owned };
}

function binary(op: BinaryOp, a: TensorLike, b: TensorLike): Tensor {
  const { tensors, owned } = toTensors(op, [a, b]);
  const [ta, tb] = tensors;
  try {
    return runOp(op, [ta, tb], {}, () => {
      const outShape = broadcastShapes(op, ta.shape, tb.shape);
      let computeDtype = promoteTypes(ta.dtype, tb.dtype);
      if (op === 'div') computeDtype = 'float32'; // true division, as in PyTorch
      if (LOGICAL.has(op)) computeDtype = 'bool';
      else if (!COMPARISON.has(op) && computeDtype === 'bool') computeDtype = 'int32'; // bool arithmetic counts
      const outDtype = COMPARISON.has(op) || LOGICAL.has(op) ? 'bool' : computeDtype;
      const ca = cast(ta, computeDtype);
      const cb = cast(tb, computeDtype);
      const storage = kernel(op, ta, 'binary')(
        op,
        viewAs(ca, outShape, broadcastStrides(op, ca.shape, ca.strides, outShape)),
        viewAs(cb, outShape, broadcastStrides(op, cb.shape, cb.strides, outShape)),
        outShape,
        outDtype,
      );
      if (ca !== ta) ca.dispose();
      if (cb !== tb) cb.dispose();
      return wrap(storage, outShape);
    });
  } finally {
    for (const s of owned) s.dispose();
  }
}

export const add = (a: TensorLike, b: TensorLike) => binary('add', a, b);
export const sub = (a: TensorLike, b: TensorLike) => binary('sub', a, b);
export const mul = (a: TensorLike, b: TensorLike) => binary('mul', a, b);
export const div = (a: TensorLike, b: TensorLike) => binary('div', a, b);
export const pow = (a: TensorLike, b: TensorLike) => binary('pow', a, b);
export const maximum = (a: TensorLike, b: TensorLike) => binary('maximum', a, b);
export const minimum = (a: TensorLike, b: TensorLike) => binary('minimum', a, b);
export const eq = (a: TensorLike, b: TensorLike) => binary('eq', a, b);
export const ne = (a: TensorLike, b: TensorLike) => binary('ne', a, b);
export const lt = (a: TensorLike, b: TensorLike) => binary('lt', a, b);
export const le = (a: TensorLike, b: TensorLike) => binary('le', a, b);
export const gt = (a: TensorLike, b: TensorLike) => binary('gt', a, b);
export const ge = (a: TensorLike, b: TensorLike) => binary('ge', a, b);
export const logicalAnd = (a: TensorLike, b: TensorLike) => binary('logicalAnd', a, b);
export const logicalOr = (a: TensorLike, b: TensorLike) => binary('logicalOr', a, b);

/** `cond ? a : b` elementwise with broadcasting; `cond` must be bool. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (cond.dtype !== 'bool') throw new OpError('where', `condition must be a bool tensor, got ${cond.dtype}`);
  const { tensors, owned } = toTensors('where', [a, b], cond);
  const [ta, tb] = tensors;
  try {
    return runOp('where', [cond, ta, tb], {}, () => {
      const outShape = broadcastShapes('where', broadcastShapes('where', cond.shape, ta.shape), tb.shape);
      const dtype = promoteTypes(ta.dtype, tb.dtype);
      const ca = cast(ta, dtype);
      const cb = cast(tb, dtype);
      const storage = kernel('where', cond, 'where')(
        viewAs(cond, outShape, broadcastStrides('where', cond.shape, cond.strides, outShape)),
        viewAs(ca, outShape, broadcastStrides('where', ca.shape, ca.strides, outShape)),
        viewAs(cb, outShape, broadcastStrides('where', cb.shape, cb.strides, outShape)),
        outShape,
      );
      if (ca !== ta) ca.dispose();
      if (cb !== tb) cb.dispose();
      return wrap(storage, outShape);
    });
  } finally {
    for (const s of owned) s.dispose();
  }
}

/** Limits values to [min, max]; either bound may be null. NaN stays NaN. */
export function clamp(x: Tensor, min: number | null, max: number | null): Tensor {
  if (min === null && max === null) throw new OpError('clamp', 'at least one of min and max must be given');
  if (min !== null && max !== null && min > max)
    throw new OpError('clamp', `min ${min} is greater than max ${max}`);
  return runOp('clamp', [x], { min, max }, () => {
    let out = x;
    if (min !== null) out = maximum(out, min);
    if (max !== null) {
      const prev = out;
      out = minimum(out, max);
      if (prev !== x) prev.dispose();
    }
    return out;
  });
}
