import type { DType } from '../dtype.js';
import type { RandomKey } from '../philox.js';
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

/** How a random leaf turns its Philox words into a value. */
export type RandomDist = 'uniform' | 'normal';

/**
 * A random value (philox.ts): element `position` of draw `rng[index]` of the program, where the
 * position is the draw's own strided index at the current element (the draw's tensor read through
 * the views between it and the program). `uniform`: U[0, 1) (`philoxUniform`), bit-identical on
 * every backend; `normal`: N(0, 1) by Box–Muller (`philoxNormal`).
 */
export interface RandomExpr {
  /** Discriminant. */
  readonly kind: 'random';
  /** Index into the program's `rng`. */
  readonly index: number;
  /** The distribution. */
  readonly dist: RandomDist;
  /** Always float32. */
  readonly dtype: 'float32';
}

/**
 * An elementwise expression: a tree of scalar ops over the elements of strided input views,
 * constants and random draws. Every node knows its dtype, so backends never infer types.
 */
export type Expr = LoadExpr | ConstExpr | OpExpr | CastExpr | RandomExpr;

/**
 * A random draw a program reads: its key (the object `drawRandomKey` returned: a compiled replay
 * swaps in the new draw's) and where element positions of the program fall in the draw's tensor:
 * position = offset + Σ_d index_d · strides[d] over the program's shape (a contiguous draw read
 * as it is has its row-major strides and offset 0; a broadcast has stride 0).
 */
export interface RandomLeaf {
  /** The draw's key. */
  readonly key: RandomKey;
  /** Strides over the program's shape (in elements of the draw). */
  readonly strides: readonly number[];
  /** The position of the program's first element. */
  readonly offset: number;
}

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
  /** Random draws, read by random nodes (absent: none). Only the elementwise kernel takes them. */
  readonly rng?: readonly RandomLeaf[];
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
    case 'random':
      return `R${e.index}${e.dist[0]}`;
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
    case 'random':
      return 1;
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
