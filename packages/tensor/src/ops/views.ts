import { runOp } from '../engine/dispatch.js';
import { lazyStorage } from '../engine/lazy.js';
import { fmtShape, OpError } from '../errors.js';
import { loadProgram } from '../expr/program.js';
import {
  broadcastStrides,
  inferShape,
  normalizeDim,
  normalizeDims,
  shapesEqual,
  viewStrides,
} from '../shape.js';
import { Tensor } from '../tensor.js';
import { wrap } from './util.js';

/** A new tensor sharing x's storage with another shape/strides/offset. */
function alias(x: Tensor, shape: readonly number[], strides: readonly number[], offset: number): Tensor {
  return new Tensor(x.storage, shape, strides, offset);
}

/**
 * A tensor sharing x's storage that is not part of any graph.
 *
 * @example
 * const w = lr.randn([2], { requiresGrad: true });
 * const d = lr.detach(w); // same values, d.requiresGrad === false
 */
export function detach(x: Tensor): Tensor {
  x.assertLive('detach');
  return alias(x, x.shape, x.strides, x.offset);
}

/**
 * Reshape: a view when the layout allows it, otherwise a contiguous copy (like torch.reshape).
 *
 * @example
 * lr.reshape(lr.arange(6), [2, 3]); // [[0, 1, 2], [3, 4, 5]]
 * lr.reshape(lr.arange(6), [-1, 2]).shape; // [3, 2]
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  x.assertLive('reshape');
  const target = inferShape('reshape', x.size, shape);
  return runOp('reshape', [x], { shape: target }, () => {
    const strides = viewStrides(x.shape, x.strides, target);
    if (strides) return alias(x, target, strides, x.offset);
    // a copy that stays lazy: a consumer that fuses it reads x through the composed view instead
    return wrap(lazyStorage('reshape', x.device, loadProgram(x.lazyView_())), target);
  });
}

/**
 * Like reshape but never copies: throws when the layout does not allow a view.
 *
 * @example
 * lr.view(lr.arange(6), [3, 2]).shape; // [3, 2]
 * lr.view(lr.arange(6).reshape(2, 3).T, [6]); // throws: a transpose is not contiguous
 */
export function view(x: Tensor, shape: readonly number[]): Tensor {
  x.assertLive('view');
  const target = inferShape('view', x.size, shape);
  const strides = viewStrides(x.shape, x.strides, target);
  if (!strides) {
    throw new OpError(
      'view',
      `cannot view a non-contiguous tensor of shape ${fmtShape(x.shape)} (strides ${fmtShape(x.strides)}) as ${fmtShape(target)}; use reshape() or contiguous()`,
    );
  }
  return runOp('reshape', [x], { shape: target }, () => alias(x, target, strides, x.offset));
}

/**
 * A view with the dims of `x` reordered: output dim i is input dim `dims[i]`.
 *
 * @example
 * lr.permute(lr.zeros([2, 3, 4]), [2, 0, 1]).shape; // [4, 2, 3]
 */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  x.assertLive('permute');
  if (dims.length !== x.rank) {
    throw new OpError(
      'permute',
      `expected ${x.rank} dims for a tensor of shape ${fmtShape(x.shape)}, got [${dims.join(',')}]`,
    );
  }
  const d = normalizeDims('permute', dims, x.rank);
  return runOp('permute', [x], { dims: d }, () =>
    alias(
      x,
      d.map((i) => x.shape[i]),
      d.map((i) => x.strides[i]),
      x.offset,
    ),
  );
}

/**
 * A view with dims `dim0` and `dim1` swapped (negative dims count from the end).
 *
 * @example
 * lr.transpose(lr.tensor([[1, 2, 3]]), 0, 1); // [[1], [2], [3]]
 */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  x.assertLive('transpose');
  if (x.rank < 2 && dim0 === -2 && dim1 === -1)
    return permute(
      x,
      x.shape.map((_, i) => i),
    );
  const a = normalizeDim('transpose', dim0, x.rank);
  const b = normalizeDim('transpose', dim1, x.rank);
  const dims = x.shape.map((_, i) => i);
  dims[a] = b;
  dims[b] = a;
  return permute(x, dims);
}

/**
 * Broadcasts size-1 dims (and new leading dims) to `shape` without copying; -1 keeps a dim.
 *
 * @example
 * lr.expand(lr.tensor([[1], [2]]), [2, 3]); // [[1, 1, 1], [2, 2, 2]], strides [1, 0]
 */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  x.assertLive('expand');
  if (shape.length < x.rank) {
    throw new OpError(
      'expand',
      `target ${fmtShape(shape)} has fewer dims than the tensor ${fmtShape(x.shape)}`,
    );
  }
  const lead = shape.length - x.rank;
  const target = shape.map((d, i) => (d === -1 && i >= lead ? x.shape[i - lead] : d));
  if (target.some((d) => !Number.isInteger(d) || d < 0))
    throw new OpError('expand', `invalid shape ${fmtShape(shape)}`);
  if (shapesEqual(target, x.shape))
    return runOp('expand', [x], { shape: target }, () => alias(x, x.shape, x.strides, x.offset));
  const strides = broadcastStrides('expand', x.shape, x.strides, target);
  return runOp('expand', [x], { shape: target }, () => alias(x, target, strides, x.offset));
}

/**
 * Elements start..end (exclusive) by `step` along `dim`, as a view. Negative indices count from the end.
 *
 * @example
 * lr.slice(lr.arange(10), 0, 1, 8, 3); // [1, 4, 7]
 * lr.slice(lr.arange(10), 0, -2); // [8, 9]
 */
export function slice(x: Tensor, dim: number, start?: number, end?: number, step = 1): Tensor {
  x.assertLive('slice');
  const d = normalizeDim('slice', dim, x.rank);
  if (!Number.isInteger(step) || step <= 0)
    throw new OpError('slice', `step must be a positive integer, got ${step}`);
  const n = x.shape[d];
  const clampIndex = (i: number) => Math.min(Math.max(i < 0 ? i + n : i, 0), n);
  const s = clampIndex(start ?? 0);
  const e = Math.max(clampIndex(end ?? n), s);
  const len = Math.ceil((e - s) / step);
  const shape = [...x.shape];
  shape[d] = len;
  const strides = [...x.strides];
  strides[d] = x.strides[d] * step;
  return runOp('slice', [x], { dim: d, start: s, end: e, step }, () =>
    alias(x, shape, strides, x.offset + s * x.strides[d]),
  );
}

/**
 * `length` elements from `start` along `dim` (a view); out-of-range is an error, unlike slice.
 *
 * @example
 * lr.narrow(lr.arange(10), 0, 2, 3); // [2, 3, 4]
 */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  x.assertLive('narrow');
  const d = normalizeDim('narrow', dim, x.rank);
  const n = x.shape[d];
  const s = start < 0 ? start + n : start;
  if (!Number.isInteger(s) || !Number.isInteger(length) || s < 0 || length < 0 || s + length > n) {
    throw new OpError('narrow', `start ${start} + length ${length} out of range for dim ${dim} of size ${n}`);
  }
  return slice(x, d, s, s + length);
}

/**
 * Removes size-1 dims (only those in `dim` when given), as a view.
 *
 * @example
 * lr.squeeze(lr.zeros([1, 3, 1])).shape; // [3]
 * lr.squeeze(lr.zeros([1, 3, 1]), 0).shape; // [3, 1]
 */
export function squeeze(x: Tensor, dim?: number | readonly number[]): Tensor {
  x.assertLive('squeeze');
  const dims =
    dim === undefined
      ? x.shape.map((_, i) => i).filter((i) => x.shape[i] === 1)
      : normalizeDims('squeeze', dim, x.rank);
  const shape = x.shape.filter((d, i) => !(dims.includes(i) && d === 1));
  return reshape(x, shape);
}

/**
 * Inserts a size-1 dim at `dim` (negative counts from the end of the new shape), as a view.
 *
 * @example
 * lr.unsqueeze(lr.tensor([1, 2]), 0).shape; // [1, 2]
 * lr.unsqueeze(lr.tensor([1, 2]), -1).shape; // [2, 1]
 */
export function unsqueeze(x: Tensor, dim: number): Tensor {
  x.assertLive('unsqueeze');
  const d = normalizeDim('unsqueeze', dim, x.rank + 1);
  const shape = [...x.shape];
  shape.splice(d, 0, 1);
  return reshape(x, shape);
}

/**
 * Merges dims `startDim..endDim` (inclusive) into one; a view when the layout allows it.
 *
 * @example
 * lr.flatten(lr.zeros([2, 3, 4])).shape; // [24]
 * lr.flatten(lr.zeros([2, 3, 4]), 1).shape; // [2, 12]
 */
export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  x.assertLive('flatten');
  if (x.rank === 0) return reshape(x, [1]);
  const s = normalizeDim('flatten', startDim, x.rank);
  const e = normalizeDim('flatten', endDim, x.rank);
  if (s > e) throw new OpError('flatten', `startDim ${startDim} comes after endDim ${endDim}`);
  const mid = x.shape.slice(s, e + 1).reduce((a, b) => a * b, 1);
  return reshape(x, [...x.shape.slice(0, s), mid, ...x.shape.slice(e + 1)]);
}

/**
 * x itself when contiguous, otherwise a contiguous copy.
 *
 * @example
 * const t = lr.arange(6).reshape(2, 3).T;
 * lr.contiguous(t).strides; // [2, 1] (a copy)
 */
export function contiguous(x: Tensor): Tensor {
  x.assertLive('contiguous');
  if (x.isContiguous()) return x;
  return clone(x);
}

/**
 * A contiguous copy that never shares storage with x.
 *
 * @example
 * const a = lr.tensor([1, 2]);
 * const b = lr.clone(a); // b.storage !== a.storage
 */
export function clone(x: Tensor): Tensor {
  return runOp('contiguous', [x], {}, () =>
    wrap(lazyStorage('contiguous', x.device, loadProgram(x.lazyView_())), x.shape),
  );
}
