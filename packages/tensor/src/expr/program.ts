import type { DType } from '../dtype.js';
import type { View } from '../storage.js';
import type { ScalarOpName } from './table.js';

/** The element of input view `input` at the current position. */
export interface LoadExpr {
  /** Discriminant. */
  readonly kind: 'load';
  /** Index into the program's `inputs`. */
  readonly input: number;
  /** The input storage's dtype. */
  readonly dtype: DType;
}

/** Constant `consts[index]` of the program (a kernel parameter, so new values compile nothing). */
export interface ConstExpr {
  /** Discriminant. */
  readonly kind: 'const';
  /** Index into the program's `consts`. */
  readonly index: number;
  /** The constant's dtype (its value is already rounded to it). */
  readonly dtype: DType;
}

/** A scalar op (a row of the op table) applied to its arguments. */
export interface OpExpr {
  /** Discriminant. */
  readonly kind: 'op';
  /** The row of `SCALAR_OPS`. */
  readonly op: ScalarOpName;
  /** One expression per operand (all of one dtype, except where's bool condition). */
  readonly args: readonly Expr[];
  /** The result dtype. */
  readonly dtype: DType;
}

/** A conversion: float→int truncates toward zero (and wraps like a C cast); anything→bool is `!= 0`. */
export interface CastExpr {
  /** Discriminant. */
  readonly kind: 'cast';
  /** The value converted. */
  readonly arg: Expr;
  /** The target dtype. */
  readonly dtype: DType;
}

/**
 * An elementwise expression: a tree of scalar ops over the elements of strided input views and
 * constants. Every node knows its dtype, so backends never infer types.
 */
export type Expr = LoadExpr | ConstExpr | OpExpr | CastExpr;

/**
 * What an elementwise kernel evaluates: `out[i] = root(inputs at i)` over `shape` (row-major).
 * Inputs are strided views already broadcast to `shape` (stride 0 on broadcast dims). In a
 * program handed to a kernel every input storage holds real memory; in the program of a lazy
 * storage (engine/lazy.ts) inputs may be lazy themselves, and are inlined when it runs.
 */
export interface ElementwiseProgram {
  /** The expression of one output element. */
  readonly root: Expr;
  /** Strided views read by the loads, each of the program's shape. */
  readonly inputs: readonly View[];
  /** Constant values, read by const nodes (already rounded to their dtype). */
  readonly consts: readonly number[];
  /** The output shape (row-major). */
  readonly shape: readonly number[];
}

/**
 * A string that identifies the program's structure (ops, dtypes, which input each load reads),
 * not its sizes, strides or constant values: backends cache generated code under it.
 *
 * @example
 * lr.exprKey({ kind: 'op', op: 'exp', args: [{ kind: 'load', input: 0, dtype: 'float32' }], dtype: 'float32' });
 * // "exp(L0)"
 */
export function exprKey(e: Expr): string {
  let key = keys.get(e);
  if (key === undefined) {
    key = computeKey(e);
    keys.set(e, key);
  }
  return key;
}

const keys = new WeakMap<Expr, string>();

function computeKey(e: Expr): string {
  switch (e.kind) {
    case 'load':
      return `L${e.input}`;
    case 'const':
      return `C${e.index}${e.dtype[0]}`;
    case 'cast':
      return `(${exprKey(e.arg)})>${e.dtype[0]}`;
    case 'op':
      return `${e.op}(${e.args.map(exprKey).join(',')})`;
  }
}

/** Number of op and cast nodes of `e` (what the chain-length cap counts). */
export function exprSize(e: Expr): number {
  switch (e.kind) {
    case 'load':
    case 'const':
      return 0;
    case 'cast':
      return 1 + exprSize(e.arg);
    case 'op': {
      let n = 1;
      for (const a of e.args) n += exprSize(a);
      return n;
    }
  }
}

/** `e` converted to `dtype` (itself when it already has that dtype). */
export function castExpr(e: Expr, dtype: DType): Expr {
  return e.dtype === dtype ? e : { kind: 'cast', arg: e, dtype };
}

/**
 * A program that reads one view (a copy; `shape` is the view's), converted to `dtype` when given.
 *
 * @example
 * const p = loadProgram(x.lazyView_(), 'float32'); // x's values as float32
 */
export function loadProgram(view: View, dtype?: DType): ElementwiseProgram {
  const load: Expr = { kind: 'load', input: 0, dtype: view.storage.dtype };
  return { root: dtype ? castExpr(load, dtype) : load, inputs: [view], consts: [], shape: view.shape };
}

/**
 * One node of a linearized expression with the indices of its arguments' steps: what code
 * generators emit, one statement per step.
 */
export interface Step {
  /** The node computed by this step. */
  readonly node: Expr;
  /** Indices of the steps that computed its arguments. */
  readonly args: readonly number[];
}

/** What `linearize` returns. */
export interface Linearized {
  /** The steps in evaluation order. */
  readonly steps: Step[];
  /** The index of the step whose value is the root's. */
  readonly result: number;
}

/**
 * `root`'s nodes as steps in evaluation order, structurally equal subtrees merged.
 *
 * @example
 * const { steps, result } = linearize(program.root); // steps[result] is the value
 */
export function linearize(root: Expr): Linearized {
  const steps: Step[] = [];
  const seen = new Map<string, number>();
  const visit = (e: Expr): number => {
    const key = exprKey(e);
    const hit = seen.get(key);
    if (hit !== undefined) return hit;
    const args = e.kind === 'op' ? e.args.map(visit) : e.kind === 'cast' ? [visit(e.arg)] : [];
    steps.push({ node: e, args });
    seen.set(key, steps.length - 1);
    return steps.length - 1;
  };
  const result = visit(root);
  return { steps, result };
}
