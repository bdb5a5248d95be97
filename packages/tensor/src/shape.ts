import { fmtShape, OpError } from './errors.js';

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (C-order) strides of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export function isContiguous(shape: Shape, strides: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Normalises a possibly negative dim against `rank`; throws naming the op when out of range. */
export function normalizeDim(op: string, dim: number, rank: number): number {
  if (!Number.isInteger(dim)) throw new OpError(op, `dim must be an integer, got ${dim}`);
  const lo = -Math.max(rank, 1);
  const hi = Math.max(rank, 1) - 1;
  if (dim < lo || dim > hi) {
    throw new OpError(op, `dim ${dim} out of range for a tensor of rank ${rank} (expected ${lo}..${hi})`);
  }
  return dim < 0 ? dim + Math.max(rank, 1) : dim;
}

/** Normalises a list of dims (or all dims when undefined), rejecting duplicates. */
export function normalizeDims(
  op: string,
  dims: number | readonly number[] | undefined,
  rank: number,
): number[] {
  if (dims === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof dims === 'number' ? [dims] : [...dims];
  const out = list.map((d) => (rank === 0 ? normalizeScalarDim(op, d) : normalizeDim(op, d, rank)));
  if (new Set(out).size !== out.length) throw new OpError(op, `dims contain duplicates: [${list.join(',')}]`);
  return rank === 0 ? [] : out;
}

function normalizeScalarDim(op: string, dim: number): number {
  if (dim !== 0 && dim !== -1) throw new OpError(op, `dim ${dim} out of range for a tensor of rank 0`);
  return 0;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new OpError(op, `shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read a tensor of (shape, strides) as if it had `target` shape (0 on broadcast dims). */
export function broadcastStrides(
  op: string,
  shape: Shape,
  strides: readonly number[],
  target: Shape,
): number[] {
  const offset = target.length - shape.length;
  if (offset < 0) throw new OpError(op, `cannot broadcast ${fmtShape(shape)} to ${fmtShape(target)}`);
  const out = new Array<number>(target.length).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    const t = target[i + offset];
    if (d === t) out[i + offset] = d === 1 ? 0 : strides[i];
    else if (d !== 1) throw new OpError(op, `cannot broadcast ${fmtShape(shape)} to ${fmtShape(target)}`);
  }
  return out;
}

/**
 * Strides for viewing (shape, strides) as `newShape` without copying, or null when the memory
 * layout does not allow it (the same rule as PyTorch's `view`).
 */
export function viewStrides(shape: Shape, strides: readonly number[], newShape: Shape): number[] | null {
  if (sizeOf(shape) === 0 || shape.length === 0 || newShape.length === 0) {
    if (sizeOf(shape) === 0 || isContiguous(shape, strides)) return contiguousStrides(newShape);
    // a one-element tensor can always be viewed
    return sizeOf(shape) === 1 ? contiguousStrides(newShape) : null;
  }
  const out = new Array<number>(newShape.length);
  let viewD = newShape.length - 1;
  let chunkBase = strides[strides.length - 1];
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    tensorNumel *= shape[d];
    if (d === 0 || (shape[d - 1] !== 1 && strides[d - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        out[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD];
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) {
        chunkBase = strides[d - 1];
        tensorNumel = 1;
        viewNumel = 1;
      }
    }
  }
  if (viewD !== -1) return null;
  return out;
}

/** Resolves a single -1 in a requested shape against `size` elements. */
export function inferShape(op: string, size: number, requested: Shape): number[] {
  const out = [...requested];
  const neg = out.indexOf(-1);
  if (out.some((d, i) => (d < 0 && i !== neg) || !Number.isInteger(d))) {
    throw new OpError(op, `invalid shape ${fmtShape(requested)}`);
  }
  if (out.lastIndexOf(-1) !== neg)
    throw new OpError(op, `only one dimension can be -1, got ${fmtShape(requested)}`);
  if (neg >= 0) {
    const rest = sizeOf(out.filter((_, i) => i !== neg));
    if (rest === 0 || size % rest !== 0) {
      throw new OpError(op, `shape ${fmtShape(requested)} is invalid for a tensor of ${size} elements`);
    }
    out[neg] = size / rest;
  }
  if (sizeOf(out) !== size) {
    throw new OpError(op, `shape ${fmtShape(requested)} is invalid for a tensor of ${size} elements`);
  }
  return out;
}

export function assertShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new OpError(op, `invalid shape ${fmtShape(shape)}`);
  }
}

export interface Coalesced {
  shape: number[];
  strides: number[][];
}

/**
 * Drops size-1 dims and merges neighbouring dims that are contiguous with each other in every
 * operand (so most views become rank 1 or 2 and share one pipeline).
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): Coalesced {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((st, k) => outStrides[k][last] === st[d] * shape[d])) {
      outShape[last] *= shape[d];
      for (let k = 0; k < strides.length; k++) outStrides[k][last] = strides[k][d];
    } else {
      outShape.push(shape[d]);
      for (let k = 0; k < strides.length; k++) outStrides[k].push(strides[k][d]);
    }
  }
  return { shape: outShape, strides: outStrides };
}
