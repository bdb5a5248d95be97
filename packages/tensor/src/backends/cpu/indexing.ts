import type { KernelTable } from '../../backend.js';
import type { TypedArray } from '../../dtype.js';
import { OpError } from '../../errors.js';
import { loadProgram } from '../../expr/program.js';
import { contiguousStrides, sizeOf } from '../../shape.js';
import type { Storage, View } from '../../storage.js';
import { elementwise } from './elementwise.js';
import { cpuArray, storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/** Calls fn(flat, multiIndex) for every position of `shape` in row-major order. */
function forEachIndex(shape: readonly number[], fn: (flat: number, idx: number[]) => void): void {
  const n = sizeOf(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let flat = 0; flat < n; flat++) {
    fn(flat, idx);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

function offsetAt(v: View, idx: readonly number[]): number {
  let off = v.offset;
  for (let i = 0; i < idx.length; i++) off += idx[i] * v.strides[i];
  return off;
}

/**
 * Indices must lie in [0, size): a negative one is an error, not a position from the end, so a
 * label or token id of −1 cannot silently select the last class or row (as in PyTorch).
 */
function checked(op: string, i: number, size: number): number {
  if (i < 0 || i >= size)
    throw new OpError(op, `index ${i} is out of bounds for a dimension of size ${size}`);
  return i;
}

export const gather: KernelTable['gather'] = (x, dim, index) => {
  const dtype = x.storage.dtype;
  const out = cpuArray(dtype, sizeOf(index.shape));
  const xs = arrayOf(x);
  const is = arrayOf(index);
  forEachIndex(index.shape, (flat, idx) => {
    const saved = idx[dim];
    idx[dim] = checked('gather', is[offsetAt(index, idx)], x.shape[dim]);
    out[flat] = xs[offsetAt(x, idx)];
    idx[dim] = saved;
  });
  return storageOf(out, dtype);
};

export const indexSelect: KernelTable['indexSelect'] = (x, dim, index) => {
  const dtype = x.storage.dtype;
  const shape = [...x.shape];
  if (shape.length > 0) shape[dim] = index.shape[0];
  const out = cpuArray(dtype, sizeOf(shape));
  const xs = arrayOf(x);
  const is = arrayOf(index);
  if (x.shape.length === 0) {
    for (let i = 0; i < index.shape[0]; i++)
      checked('indexSelect', is[index.offset + i * index.strides[0]], 1);
    out[0] = xs[x.offset];
    return storageOf(out, dtype);
  }
  const rows = index.shape[0];
  const selected = new Int32Array(rows);
  for (let r = 0; r < rows; r++)
    selected[r] = checked('indexSelect', is[index.offset + r * index.strides[0]], x.shape[dim]);
  forEachIndex(shape, (flat, idx) => {
    const saved = idx[dim];
    idx[dim] = selected[saved];
    out[flat] = xs[offsetAt(x, idx)];
    idx[dim] = saved;
  });
  return storageOf(out, dtype);
};

/** A dense copy of `target` to accumulate into, with its array and a view of it. */
function copyOfTarget(target: View): { result: Storage; out: TypedArray; outView: View } {
  const result = elementwise(loadProgram(target));
  const outView: View = {
    storage: result,
    shape: target.shape,
    strides: contiguousStrides(target.shape),
    offset: 0,
  };
  return { result, out: result.handle as TypedArray, outView };
}

export const scatterAdd: KernelTable['scatterAdd'] = (target, dim, index, src) => {
  const { result, out, outView } = copyOfTarget(target);
  const is = arrayOf(index);
  const ss = arrayOf(src);
  forEachIndex(index.shape, (_, idx) => {
    const value = ss[offsetAt(src, idx)];
    const saved = idx[dim];
    idx[dim] = checked('scatterAdd', is[offsetAt(index, idx)], target.shape[dim]);
    out[offsetAt(outView, idx)] += value;
    idx[dim] = saved;
  });
  return result;
};

export const indexAdd: KernelTable['indexAdd'] = (target, dim, index, src) => {
  const { result, out, outView } = copyOfTarget(target);
  const is = arrayOf(index);
  const ss = arrayOf(src);
  const positions = new Int32Array(index.shape[0]);
  for (let r = 0; r < positions.length; r++) {
    positions[r] = checked('indexAdd', is[index.offset + r * index.strides[0]], target.shape[dim]);
  }
  forEachIndex(src.shape, (_, idx) => {
    const value = ss[offsetAt(src, idx)];
    const saved = idx[dim];
    idx[dim] = positions[saved];
    out[offsetAt(outView, idx)] += value;
    idx[dim] = saved;
  });
  return result;
};
