import { contiguousStrides, sizeOf, viewStrides } from '../shape.js';
import type { View } from '../storage.js';

/** Shape, strides and offset of a view, without its storage. */
export interface Layout {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/**
 * Reads a view of a view as one view. `outer` indexes the row-major elements of a tensor of
 * `innerShape` (the output of a lazy chain), and `inner` says where element j of that tensor sits
 * in memory. The result reads `inner`'s memory at `outer`'s positions, or null when no single
 * strided view does (then the chain is computed first and read as it is).
 *
 * It works by finding a refinement of `innerShape` in which every stride of `outer` is the
 * contiguous stride of one dim (a reshape, permute, slice or broadcast of the lazy result always
 * has one), viewing `inner` in it, and reading `outer`'s dims off that.
 */
export function composeView(outer: Layout, innerShape: readonly number[], inner: View): View | null {
  const n = sizeOf(innerShape);
  const outN = sizeOf(outer.shape);
  if (outN === 0)
    return { storage: inner.storage, shape: outer.shape, strides: outer.shape.map(() => 0), offset: 0 };
  // the identity: same elements in the same order (a reshape of the lazy result)
  if (outN === n && outer.offset === 0 && isRowMajor(outer)) {
    const strides = viewStrides(innerShape, inner.strides, outer.shape);
    return strides ? { storage: inner.storage, shape: outer.shape, strides, offset: inner.offset } : null;
  }
  // a dim read backwards (rotateHalf's swapped halves): compose it read forwards from its last
  // element, then read the result backwards from the same element
  const backwards = outer.shape.map((m, d) => m > 1 && outer.strides[d] < 0);
  if (backwards.some(Boolean)) {
    let start = outer.offset;
    for (let d = 0; d < outer.shape.length; d++)
      if (backwards[d]) start += (outer.shape[d] - 1) * outer.strides[d];
    const forwards = composeView(
      { shape: outer.shape, strides: outer.strides.map(Math.abs), offset: start },
      innerShape,
      inner,
    );
    if (!forwards) return null;
    let offset = forwards.offset;
    const strides = forwards.strides.map((r, d) => {
      if (!backwards[d]) return r;
      offset += (outer.shape[d] - 1) * r;
      return -r;
    });
    return { ...forwards, strides, offset };
  }
  // the contiguous strides the refinement needs: every non-broadcast stride of outer, and 1
  const wanted = new Set<number>([1]);
  for (let d = 0; d < outer.shape.length; d++) {
    if (outer.shape[d] > 1 && outer.strides[d] !== 0) wanted.add(outer.strides[d]);
  }
  const steps = [...wanted].sort((a, b) => b - a);
  if (n % steps[0] !== 0) return null;
  const refined: number[] = [n / steps[0]];
  for (let i = 1; i < steps.length; i++) {
    if (steps[i - 1] % steps[i] !== 0) return null;
    refined.push(steps[i - 1] / steps[i]);
  }
  const refinedStrides = viewStrides(innerShape, inner.strides, refined);
  if (!refinedStrides) return null;
  // outer's offset as coordinates of the refined shape
  const cstr = contiguousStrides(refined);
  const start = refined.map((_, e) => Math.floor(outer.offset / cstr[e]) % refined[e]);
  if (Math.floor(outer.offset / cstr[0]) >= refined[0]) return null;
  const used = new Set<number>();
  const strides: number[] = [];
  let offset = inner.offset;
  for (let e = 0; e < refined.length; e++) offset += start[e] * refinedStrides[e];
  for (let d = 0; d < outer.shape.length; d++) {
    const size = outer.shape[d];
    if (size === 1 || outer.strides[d] === 0) {
      strides.push(0);
      continue;
    }
    const e = cstr.indexOf(outer.strides[d]);
    if (e < 0 || used.has(e) || start[e] + size > refined[e]) return null;
    used.add(e);
    strides.push(refinedStrides[e]);
  }
  return { storage: inner.storage, shape: outer.shape, strides, offset };
}

/** Whether the layout's strides are the row-major ones of its shape (size-1 dims ignored). */
function isRowMajor(l: Layout): boolean {
  const c = contiguousStrides(l.shape);
  return l.shape.every((s, d) => s === 1 || l.strides[d] === c[d]);
}
