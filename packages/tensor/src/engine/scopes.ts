/**
 * tidy scopes: every new tensor joins the innermost scope, which disposes it at the scope's end
 * unless it is returned or kept. Tensors are recognised by a brand, so this module needs no
 * import of the Tensor class.
 */

/** The brand every Tensor carries (`TENSOR_BRAND in value` is how tidy recognises one). */
export const TENSOR_BRAND: unique symbol = Symbol.for('lowrank.tensor');

/** What scopes need of a tensor. */
export interface ScopedTensor {
  readonly [TENSOR_BRAND]: true;
  dispose(): void;
}

type Tensor = ScopedTensor;

const scopes: Set<Tensor>[] = [];

/** Called by every new Tensor: the innermost tidy scope (if any) will dispose it. */
export function trackTensor(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

/**
 * Exempts a tensor from disposal by the enclosing tidy scopes. Returns it.
 *
 * @example
 * let kept!: lr.Tensor;
 * const y = lr.tidy(() => {
 *   kept = lr.keep(lr.ones([2]).mul(2)); // survives although not returned
 *   return kept.add(1);
 * });
 */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/** What `tidy` searches for tensors to keep: a tensor, or arrays/objects of them, nested. */
export type TensorContainer =
  | Tensor
  | readonly TensorContainer[]
  | { readonly [k: string]: TensorContainer }
  | undefined;

/**
 * Runs `fn` and disposes every tensor created inside it except those it returns (a tensor, or
 * arrays/objects of tensors, searched recursively) and those passed to `keep`. `fn` must be
 * synchronous. Returned tensors belong to the enclosing scope.
 *
 * @example
 * const x = lr.tensor([1, 2, 3]);
 * const y = lr.tidy(() => x.exp().sum()); // x.exp() is disposed, y is kept
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new Error(
      'tidy: fn must be synchronous (it returned a Promise); dispose tensors manually in async code',
    );
  }
  const kept = new Set<Tensor>();
  collectTensors(result, kept, 0);
  for (const t of scope) {
    if (kept.has(t)) trackTensor(t);
    else t.dispose();
  }
  return result;
}

function collectTensors(value: unknown, out: Set<Tensor>, depth: number): void {
  if (depth > 8 || value === null || typeof value !== 'object') return;
  if (isTensor(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
  }
}

function isTensor(v: object): v is Tensor {
  return TENSOR_BRAND in v;
}
