import type { DType } from '../dtype.js';
import type { View } from '../storage.js';
import type { ScalarOpName } from './table.js';

/**
 * An elementwise expression: a tree of scalar ops over the elements of strided input views and
 * constants. Every node knows its dtype, so backends never infer types.
 */
export type Expr =
  /** The element of input view `input` at the current position. */
  | { readonly kind: 'load'; readonly input: number; readonly dtype: DType }
  /** Constant `consts[index]` of the program (a kernel parameter, so new values compile nothing). */
  | { readonly kind: 'const'; readonly index: number; readonly dtype: DType }
  | { readonly kind: 'op'; readonly op: ScalarOpName; readonly args: readonly Expr[]; readonly dtype: DType }
  /** float→int truncates toward zero (and wraps like a C cast); anything→bool is `!= 0`. */
  | { readonly kind: 'cast'; readonly arg: Expr; readonly dtype: DType };

/**
 * What an elementwise kernel evaluates: `out[i] = root(inputs at i)` over `shape` (row-major).
 * Inputs are strided views already broadcast to `shape` (stride 0 on broadcast dims). In a
 * program handed to a kernel every input storage holds real memory; in the program of a lazy
 * storage (engine/lazy.ts) inputs may be lazy themselves, and are inlined when it runs.
 */
export interface ElementwiseProgram {
  readonly root: Expr;
  readonly inputs: readonly View[];
  readonly consts: readonly number[];
  readonly shape: readonly number[];
}

/**
 * A string that identifies the program's structure (ops, dtypes, which input each load reads),
 * not its sizes, strides or constant values: backends cache generated code under it.
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

/** A program that reads one view as it is (a copy; `shape` is the view's). */
export function loadProgram(view: View): ElementwiseProgram {
  return {
    root: { kind: 'load', input: 0, dtype: view.storage.dtype },
    inputs: [view],
    consts: [],
    shape: view.shape,
  };
}

/**
 * The nodes of `e` in evaluation order with duplicates merged (structurally equal subtrees are
 * computed once), each with the indices of its arguments: what code generators emit, one
 * statement per entry.
 */
export interface Step {
  readonly node: Expr;
  readonly args: readonly number[];
}

export function linearize(root: Expr): { steps: Step[]; result: number } {
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
