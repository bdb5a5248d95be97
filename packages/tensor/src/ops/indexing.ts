import { runOp } from '../engine/dispatch.js';
import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { normalizeDim } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { arange } from './creation.js';
import { cast, eq, ge, le, sub, where } from './elementwise.js';
import { kernel, wrap } from './util.js';
import { reshape, unsqueeze } from './views.js';

function checkIndex(op: string, index: Tensor): void {
  if (index.dtype !== 'int32') throw new OpError(op, `index must be an int32 tensor, got ${index.dtype}`);
}

/**
 * torch.gather: out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (and so on). index has x's rank
 * and is no larger than x in the other dims; out has index's shape. Indices outside [0, size),
 * negative ones included (they do not count from the end), throw (on WebGPU they are reported at
 * the next read-back).
 *
 * @example
 * const x = lr.tensor([[1, 2], [3, 4]]);
 * lr.gather(x, 1, lr.tensor([[1], [0]], { dtype: 'int32' })); // [[2], [3]]
 */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  checkIndex('gather', index);
  const d = normalizeDim('gather', dim, x.rank);
  if (index.rank !== x.rank) {
    throw new OpError(
      'gather',
      `index must have the input's rank ${x.rank}, got shape ${fmtShape(index.shape)}`,
    );
  }
  for (let i = 0; i < x.rank; i++) {
    if (i !== d && index.shape[i] > x.shape[i]) {
      throw new OpError(
        'gather',
        `index ${fmtShape(index.shape)} is larger than input ${fmtShape(x.shape)} at dim ${i}`,
      );
    }
  }
  return runOp('gather', [x, index], { dim: d }, () =>
    wrap(kernel('gather', x, 'gather')(x.view_(), d, index.view_()), index.shape),
  );
}

/**
 * Selects entries of `x` along `dim` at the positions of a 1-D int32 index. Indices outside
 * [0, size), negative ones included, throw (on WebGPU at the next read-back).
 *
 * @example
 * const ids = lr.tensor([2, 0], { dtype: 'int32' });
 * lr.indexSelect(lr.tensor([[1, 1], [2, 2], [3, 3]]), 0, ids); // [[3, 3], [1, 1]]
 */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  checkIndex('indexSelect', index);
  if (index.rank > 1)
    throw new OpError('indexSelect', `index must be 1-D, got shape ${fmtShape(index.shape)}`);
  const d = normalizeDim('indexSelect', dim, x.rank);
  const shape = [...x.shape];
  if (x.rank > 0) shape[d] = index.size;
  // a 0-d index is read as 1-D through its view (no intermediate tensor that could leak)
  const flat = index.rank === 1 ? index.view_() : { ...index.view_(), shape: [1], strides: [1] };
  return runOp('indexSelect', [x, index], { dim: d }, () =>
    wrap(kernel('indexSelect', x, 'indexSelect')(x.view_(), d, flat), shape),
  );
}

/**
 * Embedding lookup: rows of `weight` [V, D] at int32 `ids` of any shape → [...ids.shape, D].
 * An id outside [0, V) is an error (indexSelect's, on WebGPU at the next read-back).
 *
 * @example
 * const weight = lr.tensor([[0, 0], [1, 1], [2, 2]]);
 * lr.embedding(weight, lr.tensor([[2, 1]], { dtype: 'int32' })); // [[[2, 2], [1, 1]]]
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (weight.rank !== 2)
    throw new OpError('embedding', `weight must be 2-D [V, D], got ${fmtShape(weight.shape)}`);
  checkIndex('embedding', ids);
  weight.assertLive('embedding');
  ids.assertLive('embedding');
  return tidy(() => reshape(indexSelect(weight, 0, reshape(ids, [-1])), [...ids.shape, weight.shape[1]]));
}

/**
 * Out-of-place torch.scatter_add: a copy of `target` with `src` added at `index` along `dim`.
 *
 * @example
 * const index = lr.tensor([0, 0, 2], { dtype: 'int32' });
 * lr.scatterAdd(lr.zeros([3]), 0, index, lr.tensor([1, 2, 3])); // [3, 0, 3]
 */
export function scatterAdd(target: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  checkIndex('scatterAdd', index);
  const d = normalizeDim('scatterAdd', dim, target.rank);
  if (index.rank !== target.rank || src.rank !== target.rank) {
    throw new OpError(
      'scatterAdd',
      `target, index and src must have the same rank, got ${fmtShape(target.shape)}, ${fmtShape(index.shape)}, ${fmtShape(src.shape)}`,
    );
  }
  for (let i = 0; i < target.rank; i++) {
    if (index.shape[i] > src.shape[i] || (i !== d && index.shape[i] > target.shape[i])) {
      throw new OpError(
        'scatterAdd',
        `index ${fmtShape(index.shape)} does not fit src ${fmtShape(src.shape)} / target ${fmtShape(target.shape)} at dim ${i}`,
      );
    }
  }
  if (src.dtype !== target.dtype)
    throw new OpError('scatterAdd', `src dtype ${src.dtype} differs from target ${target.dtype}`);
  return runOp('scatterAdd', [target, index, src], { dim: d }, () =>
    wrap(
      kernel('scatterAdd', target, 'scatterAdd')(target.view_(), d, index.view_(), src.view_()),
      target.shape,
    ),
  );
}

/**
 * Out-of-place torch.index_add: a copy of `target` with slices of `src` added at positions `index` along `dim`.
 *
 * @example
 * const index = lr.tensor([0, 0], { dtype: 'int32' });
 * lr.indexAdd(lr.zeros([2, 2]), 0, index, lr.ones([2, 2])); // [[2, 2], [0, 0]]
 */
export function indexAdd(target: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  checkIndex('indexAdd', index);
  if (index.rank !== 1)
    throw new OpError('indexAdd', `index must be 1-D, got shape ${fmtShape(index.shape)}`);
  const d = normalizeDim('indexAdd', dim, target.rank);
  const expected = [...target.shape];
  expected[d] = index.shape[0];
  if (src.rank !== target.rank || src.shape.some((s, i) => s !== expected[i])) {
    throw new OpError('indexAdd', `src must have shape ${fmtShape(expected)}, got ${fmtShape(src.shape)}`);
  }
  if (src.dtype !== target.dtype)
    throw new OpError('indexAdd', `src dtype ${src.dtype} differs from target ${target.dtype}`);
  return runOp('indexAdd', [target, index, src], { dim: d }, () =>
    wrap(kernel('indexAdd', target, 'indexAdd')(target.view_(), d, index.view_(), src.view_()), target.shape),
  );
}

/**
 * One-hot encoding of int32 indices: [...shape, numClasses] int32. Not differentiable.
 *
 * @example
 * lr.oneHot(lr.tensor([0, 2], { dtype: 'int32' }), 3); // [[1, 0, 0], [0, 0, 1]]
 */
export function oneHot(indices: Tensor, numClasses: number): Tensor {
  checkIndex('oneHot', indices);
  if (!Number.isInteger(numClasses) || numClasses <= 0) {
    throw new OpError('oneHot', `numClasses must be a positive integer, got ${numClasses}`);
  }
  return tidy(() =>
    cast(eq(unsqueeze(indices, -1), arange(numClasses, undefined, 1, { device: indices.device })), 'int32'),
  );
}

function triangle(op: 'triu' | 'tril', x: Tensor, diagonal: number): Tensor {
  x.assertLive(op);
  if (x.rank < 2) throw new OpError(op, `expected at least 2 dims, got ${fmtShape(x.shape)}`);
  const [m, n] = x.shape.slice(-2);
  return tidy(() => {
    const rows = reshape(arange(m, undefined, 1, { device: x.device }), [m, 1]);
    const cols = reshape(arange(n, undefined, 1, { device: x.device }), [1, n]);
    const diff = sub(cols, rows); // j - i
    const keep = op === 'triu' ? ge(diff, diagonal) : le(diff, diagonal);
    return where(keep, x, 0);
  });
}

/**
 * Upper triangle (j − i ≥ diagonal) of the last two dims; the rest is zero.
 *
 * @example
 * lr.triu(lr.ones([3, 3]), 1); // [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
 */
export const triu = (x: Tensor, diagonal = 0) => triangle('triu', x, diagonal);
/**
 * Lower triangle (j − i ≤ diagonal) of the last two dims; the rest is zero.
 *
 * @example
 * lr.tril(lr.ones([2, 2])); // [[1, 0], [1, 1]] (a causal mask)
 */
export const tril = (x: Tensor, diagonal = 0) => triangle('tril', x, diagonal);
