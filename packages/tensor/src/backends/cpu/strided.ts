import type { TypedArray } from '../../dtype.js';
import { isContiguous } from '../../shape.js';
import type { View } from '../../storage.js';

export function arrayOf(v: View): TypedArray {
  return v.storage.handle as TypedArray;
}

/**
 * Element offsets of a strided view in row-major order, or null when the view is contiguous
 * (element i is then at `offset + i`).
 */
export function offsetsOf(v: View): Int32Array | null {
  if (isContiguous(v.shape, v.strides)) return null;
  const rank = v.shape.length;
  let n = 1;
  for (const d of v.shape) n *= d;
  const out = new Int32Array(n);
  if (n === 0) return out;
  const idx = new Array<number>(rank).fill(0);
  let off = v.offset;
  const last = rank - 1;
  const lastSize = v.shape[last];
  const lastStride = v.strides[last];
  for (let i = 0; i < n; ) {
    // fill one innermost row at a time
    for (let j = 0; j < lastSize; j++) out[i++] = off + j * lastStride;
    // advance the odometer over the outer dims
    for (let d = last - 1; d >= 0; d--) {
      idx[d]++;
      off += v.strides[d];
      if (idx[d] < v.shape[d]) break;
      off -= idx[d] * v.strides[d];
      idx[d] = 0;
    }
  }
  return out;
}
