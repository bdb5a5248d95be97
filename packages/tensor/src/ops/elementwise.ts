import { type DType, promoteTypes, scalarDType } from '../dtype.js';
import { runOp } from '../engine/dispatch.js';
import { lazyStorage } from '../engine/lazy.js';
import { OpError } from '../errors.js';
import { castExpr, type ElementwiseProgram, type Expr } from '../expr/program.js';
import { type BinaryOp, type ScalarOpName, TABLE, type UnaryOp } from '../expr/table.js';
import { broadcastShapes, broadcastStrides } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { scalar } from './creation.js';
import { lazyViewAs, type TensorLike, wrap } from './util.js';

// ---- building programs ----------------------------------------------------------------------

/** One operand of an elementwise op: a tensor broadcast to the output shape, read as `as`. */
interface Operand {
  readonly t: Tensor;
  readonly as: DType;
}

/**
 * The tensor of `make(operands)` over `shape`: a lazy storage whose program loads each operand
 * (broadcast, cast where its dtype differs). Nothing runs until the values are needed.
 */
function emit(
  op: string,
  shape: readonly number[],
  operands: readonly Operand[],
  make: (args: Expr[]) => Expr,
): Tensor {
  const inputs = operands.map(({ t }) =>
    lazyViewAs(t, shape, broadcastStrides(op, t.shape, t.strides, shape)),
  );
  const args = operands.map(({ t, as }, i): Expr => {
    return castExpr({ kind: 'load', input: i, dtype: t.dtype }, as);
  });
  const program: ElementwiseProgram = { root: make(args), inputs, consts: [], shape };
  return wrap(lazyStorage(op, operands[0].t.device, program), shape);
}

function opNode(op: ScalarOpName, args: Expr[], dtype: DType): Expr {
  return { kind: 'op', op, args, dtype };
}

// ---- unary ---------------------------------------------------------------------------------

function unary(name: string, op: UnaryOp, x: Tensor, attrs: object = {}): Tensor {
  return runOp(name, [x], attrs, () => {
    const row = TABLE[op];
    if (x.dtype === 'bool' && row.inputs === 'numeric') {
      throw new OpError(name, 'expected a float32 or int32 tensor, got bool');
    }
    const as = row.result === 'float' ? 'float32' : x.dtype;
    const out = row.result === 'bool' ? 'bool' : as;
    return emit(name, x.shape, [{ t: x, as }], (args) => opNode(op, args, out));
  });
}

/**
 * `-x` elementwise.
 *
 * @example
 * lr.neg(lr.tensor([1, -2])); // [-1, 2]
 */
export const neg = (x: Tensor) => unary('neg', 'neg', x);
/**
 * `|x|` elementwise.
 *
 * @example
 * lr.abs(lr.tensor([-1.5, 2])); // [1.5, 2]
 */
export const abs = (x: Tensor) => unary('abs', 'abs', x);
/**
 * `e ** x` elementwise.
 *
 * @example
 * lr.exp(lr.tensor([0, 1])); // [1, 2.7182817]
 */
export const exp = (x: Tensor) => unary('exp', 'exp', x);
/**
 * Natural logarithm, elementwise (`log(0)` is -Infinity).
 *
 * @example
 * lr.log(lr.tensor([1, Math.E])); // [0, 1]
 */
export const log = (x: Tensor) => unary('log', 'log', x);
/**
 * Square root, elementwise.
 *
 * @example
 * lr.sqrt(lr.tensor([4, 9])); // [2, 3]
 */
export const sqrt = (x: Tensor) => unary('sqrt', 'sqrt', x);
/**
 * `1 / sqrt(x)` elementwise.
 *
 * @example
 * lr.rsqrt(lr.tensor([4, 16])); // [0.5, 0.25]
 */
export const rsqrt = (x: Tensor) => unary('rsqrt', 'rsqrt', x);
/**
 * Hyperbolic tangent, elementwise.
 *
 * @example
 * lr.tanh(lr.tensor([0])); // [0]
 */
export const tanh = (x: Tensor) => unary('tanh', 'tanh', x);
/**
 * Logistic sigmoid `1 / (1 + e ** -x)`, elementwise.
 *
 * @example
 * lr.sigmoid(lr.tensor([0])); // [0.5]
 */
export const sigmoid = (x: Tensor) => unary('sigmoid', 'sigmoid', x);
/**
 * `max(x, 0)` elementwise (NaN propagates).
 *
 * @example
 * lr.relu(lr.tensor([-1, 2])); // [0, 2]
 */
export const relu = (x: Tensor) => unary('relu', 'relu', x);
/**
 * SiLU (swish) `x * sigmoid(x)`, elementwise.
 *
 * @example
 * lr.silu(lr.tensor([0, 1])); // [0, 0.7310586]
 */
export const silu = (x: Tensor) => unary('silu', 'silu', x);
/**
 * -1, 0 or 1 by the sign of each element.
 *
 * @example
 * lr.sign(lr.tensor([-3, 0, 2])); // [-1, 0, 1]
 */
export const sign = (x: Tensor) => unary('sign', 'sign', x);
/**
 * `x * x` elementwise.
 *
 * @example
 * lr.square(lr.tensor([-3, 2])); // [9, 4]
 */
export const square = (x: Tensor) => unary('square', 'square', x);
/**
 * `1 / x` elementwise.
 *
 * @example
 * lr.reciprocal(lr.tensor([2, 4])); // [0.5, 0.25]
 */
export const reciprocal = (x: Tensor) => unary('reciprocal', 'reciprocal', x);
/**
 * Sine (radians), elementwise.
 *
 * @example
 * lr.sin(lr.tensor([0, Math.PI / 2])); // [0, 1]
 */
export const sin = (x: Tensor) => unary('sin', 'sin', x);
/**
 * Cosine (radians), elementwise.
 *
 * @example
 * lr.cos(lr.tensor([0, Math.PI])); // [1, -1]
 */
export const cos = (x: Tensor) => unary('cos', 'cos', x);
/**
 * Rounds down, elementwise.
 *
 * @example
 * lr.floor(lr.tensor([1.7, -1.2])); // [1, -2]
 */
export const floor = (x: Tensor) => unary('floor', 'floor', x);
/**
 * Rounds up, elementwise.
 *
 * @example
 * lr.ceil(lr.tensor([1.2, -1.7])); // [2, -1]
 */
export const ceil = (x: Tensor) => unary('ceil', 'ceil', x);
/**
 * Rounds to the nearest integer, halves to even (as PyTorch).
 *
 * @example
 * lr.round(lr.tensor([0.5, 1.5, 2.4])); // [0, 2, 2]
 */
export const round = (x: Tensor) => unary('round', 'round', x);
/**
 * Elementwise NOT of truthiness, as a bool tensor.
 *
 * @example
 * lr.logicalNot(lr.tensor([0, 2])); // [true, false]
 */
export const logicalNot = (x: Tensor) => unary('logicalNot', 'logicalNot', x);

/**
 * GELU: exact `x·Φ(x)` (approximate 'none', default) or the tanh form GPT-2 calls gelu_new.
 *
 * @example
 * lr.gelu(lr.tensor([0, 1])); // [0, 0.8413447]
 * lr.gelu(lr.tensor([1]), { approximate: 'tanh' }); // [0.841192] (GPT-2's gelu_new)
 */
export function gelu(x: Tensor, options: { approximate?: 'tanh' | 'none' } = {}): Tensor {
  const approximate = options.approximate ?? 'none';
  if (approximate !== 'tanh' && approximate !== 'none') {
    throw new OpError('gelu', `approximate must be 'tanh' or 'none', got '${String(approximate)}'`);
  }
  return unary('gelu', approximate === 'tanh' ? 'geluTanh' : 'geluErf', x, { approximate });
}

/**
 * Converts to `dtype` (returns `x` itself when it already has that dtype).
 *
 * @example
 * lr.cast(lr.tensor([1.7, -1.7]), 'int32'); // [1, -1] (truncates, as PyTorch)
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return runOp('cast', [x], { dtype }, () => emit('cast', x.shape, [{ t: x, as: dtype }], ([a]) => a));
}

// ---- binary --------------------------------------------------------------------------------

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
      const row = TABLE[op];
      let as = promoteTypes(ta.dtype, tb.dtype);
      if (row.result === 'float')
        as = 'float32'; // true division, as in PyTorch
      else if (op === 'logicalAnd' || op === 'logicalOr') as = 'bool';
      else if (row.inputs === 'numeric' && as === 'bool') as = 'int32'; // bool arithmetic counts
      const out = row.result === 'bool' ? 'bool' : as;
      return emit(
        op,
        outShape,
        [
          { t: ta, as },
          { t: tb, as },
        ],
        (args) => opNode(op, args, out),
      );
    });
  } finally {
    for (const s of owned) s.dispose();
  }
}

/**
 * `a + b` elementwise with NumPy broadcasting; either side may be a number.
 *
 * @example
 * lr.add(lr.tensor([[1], [2]]), lr.tensor([10, 20])); // [[11, 21], [12, 22]]
 */
export const add = (a: TensorLike, b: TensorLike) => binary('add', a, b);
/**
 * `a - b` elementwise with broadcasting.
 *
 * @example
 * lr.sub(lr.tensor([5, 7]), 1); // [4, 6]
 */
export const sub = (a: TensorLike, b: TensorLike) => binary('sub', a, b);
/**
 * `a * b` elementwise with broadcasting.
 *
 * @example
 * lr.mul(lr.tensor([1, 2]), lr.tensor([3, 4])); // [3, 8]
 */
export const mul = (a: TensorLike, b: TensorLike) => binary('mul', a, b);
/**
 * `a / b` elementwise with broadcasting (float result).
 *
 * @example
 * lr.div(lr.tensor([1, 3]), 2); // [0.5, 1.5]
 */
export const div = (a: TensorLike, b: TensorLike) => binary('div', a, b);
/**
 * `a ** b` elementwise with broadcasting.
 *
 * @example
 * lr.pow(lr.tensor([2, 3]), 2); // [4, 9]
 */
export const pow = (a: TensorLike, b: TensorLike) => binary('pow', a, b);
/**
 * Elementwise maximum with broadcasting (NaN propagates).
 *
 * @example
 * lr.maximum(lr.tensor([1, 5]), 3); // [3, 5]
 */
export const maximum = (a: TensorLike, b: TensorLike) => binary('maximum', a, b);
/**
 * Elementwise minimum with broadcasting (NaN propagates).
 *
 * @example
 * lr.minimum(lr.tensor([1, 5]), 3); // [1, 3]
 */
export const minimum = (a: TensorLike, b: TensorLike) => binary('minimum', a, b);
/**
 * `a == b` elementwise with broadcasting, as a bool tensor.
 *
 * @example
 * lr.eq(lr.tensor([1, 2]), 2); // [false, true]
 */
export const eq = (a: TensorLike, b: TensorLike) => binary('eq', a, b);
/**
 * `a != b` elementwise with broadcasting, as a bool tensor.
 *
 * @example
 * lr.ne(lr.tensor([1, 2]), 2); // [true, false]
 */
export const ne = (a: TensorLike, b: TensorLike) => binary('ne', a, b);
/**
 * `a < b` elementwise with broadcasting, as a bool tensor.
 *
 * @example
 * lr.lt(lr.tensor([1, 2]), 2); // [true, false]
 */
export const lt = (a: TensorLike, b: TensorLike) => binary('lt', a, b);
/**
 * `a <= b` elementwise with broadcasting, as a bool tensor.
 *
 * @example
 * lr.le(lr.tensor([1, 2]), 2); // [true, true]
 */
export const le = (a: TensorLike, b: TensorLike) => binary('le', a, b);
/**
 * `a > b` elementwise with broadcasting, as a bool tensor.
 *
 * @example
 * lr.gt(lr.tensor([1, 2]), 1); // [false, true]
 */
export const gt = (a: TensorLike, b: TensorLike) => binary('gt', a, b);
/**
 * `a >= b` elementwise with broadcasting, as a bool tensor.
 *
 * @example
 * lr.ge(lr.tensor([1, 2]), 2); // [false, true]
 */
export const ge = (a: TensorLike, b: TensorLike) => binary('ge', a, b);
/**
 * Elementwise AND of truthiness with broadcasting, as a bool tensor.
 *
 * @example
 * lr.logicalAnd(lr.tensor([true, true]), lr.tensor([true, false])); // [true, false]
 */
export const logicalAnd = (a: TensorLike, b: TensorLike) => binary('logicalAnd', a, b);
/**
 * Elementwise OR of truthiness with broadcasting, as a bool tensor.
 *
 * @example
 * lr.logicalOr(lr.tensor([false, false]), lr.tensor([true, false])); // [true, false]
 */
export const logicalOr = (a: TensorLike, b: TensorLike) => binary('logicalOr', a, b);

/**
 * `cond ? a : b` elementwise with broadcasting; `cond` must be bool.
 *
 * @example
 * const x = lr.tensor([-1, 2]);
 * lr.where(x.gt(0), x, 0); // [0, 2]
 */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (cond.dtype !== 'bool') throw new OpError('where', `condition must be a bool tensor, got ${cond.dtype}`);
  const { tensors, owned } = toTensors('where', [a, b], cond);
  const [ta, tb] = tensors;
  try {
    return runOp('where', [cond, ta, tb], {}, () => {
      const outShape = broadcastShapes('where', broadcastShapes('where', cond.shape, ta.shape), tb.shape);
      const dtype = promoteTypes(ta.dtype, tb.dtype);
      return emit(
        'where',
        outShape,
        [
          { t: cond, as: 'bool' },
          { t: ta, as: dtype },
          { t: tb, as: dtype },
        ],
        (args) => opNode('where', args, dtype),
      );
    });
  } finally {
    for (const s of owned) s.dispose();
  }
}

/**
 * Limits values to [min, max]; either bound may be null. NaN stays NaN.
 *
 * @example
 * lr.clamp(lr.tensor([-2, 0.5, 3]), 0, 1); // [0, 0.5, 1]
 * lr.clamp(lr.tensor([-2, 3]), 0, null); // [0, 3]
 */
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
