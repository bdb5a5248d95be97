/**
 * The one table of elementwise scalar ops. Every row says how many inputs the op takes, how its
 * result dtype follows from theirs, whether a gradient flows through it, its scalar definition in
 * TypeScript (the reference, which the CPU code generator also calls) and its WGSL expression.
 * Everything else is derived from here: the `UnaryOp`/`BinaryOp` types, the float-result and
 * non-differentiable lists, both backends' elementwise code generators and the tests' op lists.
 * Adding an op is one row here plus its gradient rule (docs/CONTRIBUTING.md).
 */

/**
 * How an op's result dtype follows from its inputs (after the op layer has promoted them to one
 * dtype): `same` keeps it; `float` turns int/bool inputs into float32 first (exp(int) → float, as
 * PyTorch); `bool` gives bool (comparisons and logical ops).
 */
export type ResultRule = 'same' | 'float' | 'bool';

/** Which input dtypes an op accepts (after promotion): bool never takes arithmetic. */
export type InputRule = 'numeric' | 'any';

/**
 * WGSL templates: `$0`, `$1`, `$2` are the operands. `f` is for f32 operands; `i` for i32 and u32
 * (bool) operands, with `Z` standing for that type's zero literal. An op without `i` has no
 * integer form (its inputs are cast to float32 first, per `result: 'float'`).
 */
export interface WgslForms {
  /** The expression for f32 operands. */
  readonly f: string;
  /** The expression for i32 and u32 (bool) operands; absent when the op has no integer form. */
  readonly i?: string;
}

/** One row of the table. */
export interface ScalarOpDef {
  /** Number of operands. */
  readonly arity: 1 | 2 | 3;
  /** How the result dtype follows from the operands'. */
  readonly result: ResultRule;
  /** Which operand dtypes the op accepts. */
  readonly inputs: InputRule;
  /** False for ops whose output carries no gradient (comparisons, rounding, logical ops). */
  readonly differentiable: boolean;
  /** The scalar definition (float semantics; integer results are wrapped to int32 by the caller). */
  readonly ts: (a: number, b: number, c: number) => number;
  /** Integer definition where it differs from `ts` followed by int32 wrapping (e.g. `Math.imul`). */
  readonly tsInt?: (a: number, b: number) => number;
  /** The WGSL forms. */
  readonly wgsl: WgslForms;
}

/** erf by Numerical Recipes' Chebyshev erfc (fractional error < 1.2e-7: below float32 resolution). */
export function erf(x: number): number {
  const a = Math.abs(x);
  const t = 1 / (1 + 0.5 * a);
  const y =
    t *
    Math.exp(
      -a * a -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x < 0 ? y - 1 : 1 - y;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** Round half to even, as PyTorch. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

type Unary = ScalarOpDef & { readonly arity: 1 };
type Binary = ScalarOpDef & { readonly arity: 2 };

const unaryF = (ts: (x: number) => number, f: string, i?: string): Unary => ({
  arity: 1,
  result: 'float',
  inputs: 'any',
  differentiable: true,
  ts,
  wgsl: i ? { f, i } : { f },
});
const unaryN = (ts: (x: number) => number, f: string, i: string, differentiable = true): Unary => ({
  arity: 1,
  result: 'same',
  inputs: 'numeric',
  differentiable,
  ts,
  wgsl: { f, i },
});
const arith = (ts: (a: number, b: number) => number, f: string, i: string): Binary => ({
  arity: 2,
  result: 'same',
  inputs: 'numeric',
  differentiable: true,
  ts,
  wgsl: { f, i },
});
const compare = (ts: (a: number, b: number) => number, f: string, i: string): Binary => ({
  arity: 2,
  result: 'bool',
  inputs: 'any',
  differentiable: false,
  ts,
  wgsl: { f, i },
});

/**
 * The table. WGSL helpers (`tanh_s`, `sigmoid_s`, `erf_f`, `pow_f`, `pow_i`, `is_nan`, `nan_f`,
 * `f_nonzero`, `reduce_2pi`) are defined once in backends/webgpu/wgsl.ts: they are NaN-safe under
 * any compiler assumptions, which WGSL's built-ins do not promise.
 */
/** The rows, by op name (read them through `TABLE`, typed by the row interface). */
const SCALAR_OPS = {
  // ---- one input
  neg: unaryN((x) => -x, '-$0', '-$0'),
  abs: unaryN(Math.abs, 'abs($0)', 'abs($0)'),
  exp: unaryF(Math.exp, 'exp($0)'),
  log: unaryF(Math.log, 'log($0)'),
  sqrt: unaryF(Math.sqrt, 'sqrt($0)'),
  rsqrt: unaryF((x) => 1 / Math.sqrt(x), '1.0 / sqrt($0)'),
  tanh: unaryF(Math.tanh, 'tanh_s($0)'),
  sigmoid: unaryF(
    (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))),
    'sigmoid_s($0)',
  ),
  // NaN stays NaN, as in PyTorch
  relu: unaryN((x) => Math.max(x, 0), 'select(0.0, $0, !($0 <= 0.0))', 'max($0, 0)'),
  // 0.5·x·(1 + tanh(u)) computed as x / (1 + e^(−2u)), the same function: 1 + tanh(u) cancels for
  // u ≪ 0 (it gave exactly 0 below x ≈ −5.5, where the Wasm kernels' form keeps −3e-21 at x = −8,
  // so fused and unfused chains disagreed once a pow met the sign)
  geluTanh: unaryF(
    (x) => x / (1 + Math.exp(-2 * SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))),
    '0.5 * $0 * (1.0 + tanh_s(0.7978845608028654 * ($0 + 0.044715 * $0 * $0 * $0)))',
  ),
  geluErf: unaryF(
    (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    '0.5 * $0 * (1.0 + erf_f($0 * 0.7071067811865476))',
  ),
  silu: unaryF(
    (x) => (x >= 0 ? x / (1 + Math.exp(-x)) : (x * Math.exp(x)) / (1 + Math.exp(x))),
    '$0 * sigmoid_s($0)',
  ),
  sign: unaryN(Math.sign, 'select(sign($0), $0, is_nan($0))', 'sign($0)', false),
  square: unaryN((x) => x * x, '$0 * $0', '$0 * $0'),
  reciprocal: unaryF((x) => 1 / x, '1.0 / $0'),
  sin: unaryF(Math.sin, 'sin(reduce_2pi($0))'),
  cos: unaryF(Math.cos, 'cos(reduce_2pi($0))'),
  floor: unaryN(Math.floor, 'floor($0)', '$0', false),
  ceil: unaryN(Math.ceil, 'ceil($0)', '$0', false),
  round: unaryN(roundHalfEven, 'round($0)', '$0', false),
  logicalNot: {
    arity: 1 as const,
    result: 'bool',
    inputs: 'any',
    differentiable: false,
    ts: (x) => (x === 0 ? 1 : 0),
    wgsl: { f: 'select(0u, 1u, !f_nonzero($0))', i: 'select(0u, 1u, $0 == Z)' },
  },
  // ---- two inputs (broadcast by the op layer)
  add: arith((a, b) => a + b, '$0 + $1', '$0 + $1'),
  sub: arith((a, b) => a - b, '$0 - $1', '$0 - $1'),
  mul: { ...arith((a, b) => a * b, '$0 * $1', '$0 * $1'), tsInt: Math.imul },
  // true division: the op layer casts integer operands to float32 first, as PyTorch
  div: { ...arith((a, b) => a / b, '$0 / $1', '$0 / $1'), result: 'float' },
  pow: arith(Math.pow, 'pow_f($0, $1)', 'pow_i($0, $1)'),
  // NaN-propagating
  maximum: arith(
    Math.max,
    'select(select($1, $0, $0 > $1), nan_f(), is_nan($0) || is_nan($1))',
    'max($0, $1)',
  ),
  minimum: arith(
    Math.min,
    'select(select($1, $0, $0 < $1), nan_f(), is_nan($0) || is_nan($1))',
    'min($0, $1)',
  ),
  eq: compare(
    (a, b) => (a === b ? 1 : 0),
    'select(0u, 1u, $0 == $1 && !is_nan($0) && !is_nan($1))',
    'select(0u, 1u, $0 == $1)',
  ),
  ne: compare(
    (a, b) => (a !== b ? 1 : 0),
    'select(0u, 1u, !($0 == $1) || is_nan($0) || is_nan($1))',
    'select(0u, 1u, $0 != $1)',
  ),
  lt: compare((a, b) => (a < b ? 1 : 0), 'select(0u, 1u, $0 < $1)', 'select(0u, 1u, $0 < $1)'),
  le: compare((a, b) => (a <= b ? 1 : 0), 'select(0u, 1u, $0 <= $1)', 'select(0u, 1u, $0 <= $1)'),
  gt: compare((a, b) => (a > b ? 1 : 0), 'select(0u, 1u, $0 > $1)', 'select(0u, 1u, $0 > $1)'),
  ge: compare((a, b) => (a >= b ? 1 : 0), 'select(0u, 1u, $0 >= $1)', 'select(0u, 1u, $0 >= $1)'),
  logicalAnd: compare(
    (a, b) => (a !== 0 && b !== 0 ? 1 : 0),
    'select(0u, 1u, f_nonzero($0) && f_nonzero($1))',
    'select(0u, 1u, $0 != Z && $1 != Z)',
  ),
  logicalOr: compare(
    (a, b) => (a !== 0 || b !== 0 ? 1 : 0),
    'select(0u, 1u, f_nonzero($0) || f_nonzero($1))',
    'select(0u, 1u, $0 != Z || $1 != Z)',
  ),
  // ---- three inputs: the first is a bool condition, the result takes the other two's dtype
  where: {
    arity: 3 as const,
    result: 'same',
    inputs: 'any',
    differentiable: true,
    ts: (c, a, b) => (c !== 0 ? a : b),
    wgsl: { f: 'select($2, $1, $0 != 0u)', i: 'select($2, $1, $0 != 0u)' },
  },
} satisfies Record<string, ScalarOpDef>;

/** Name of a scalar op (a row of `SCALAR_OPS`). */
export type ScalarOpName = keyof typeof SCALAR_OPS;

type OpsOfArity<N> = {
  [K in ScalarOpName]: (typeof SCALAR_OPS)[K]['arity'] extends N ? K : never;
}[ScalarOpName];

/** Elementwise one-input ops (gelu has two rows: `geluTanh` and `geluErf`). */
export type UnaryOp = OpsOfArity<1>;
/** Elementwise two-input ops (comparisons and logical ops return bool). */
export type BinaryOp = OpsOfArity<2>;

/**
 * The table: every scalar op's row, by name.
 *
 * @example
 * lr.SCALAR_OPS.exp.wgsl.f; // "exp($0)"
 * lr.SCALAR_OPS.eq.differentiable; // false
 */
export const TABLE: Readonly<Record<ScalarOpName, ScalarOpDef>> = SCALAR_OPS;

const names = Object.keys(SCALAR_OPS) as ScalarOpName[];
/** Every one-input op, in table order. */
export const UNARY_OPS = names.filter((n) => SCALAR_OPS[n].arity === 1) as UnaryOp[];
/** Every two-input op, in table order. */
export const BINARY_OPS = names.filter((n) => SCALAR_OPS[n].arity === 2) as BinaryOp[];
/** Scalar ops whose output carries no gradient. */
export const NON_DIFFERENTIABLE_SCALAR_OPS: readonly ScalarOpName[] = names.filter(
  (n) => !SCALAR_OPS[n].differentiable,
);
