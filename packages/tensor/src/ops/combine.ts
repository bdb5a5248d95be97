import type { DType } from '../dtype.js';
import { promoteTypes } from '../dtype.js';
import { runOp } from '../engine/dispatch.js';
import { flatten } from '../engine/lazy.js';
import { getBackend } from '../engine/registry.js';
import { fmtShape, OpError } from '../errors.js';
import { loadProgram } from '../expr/program.js';
import { contiguousStrides, normalizeDim, sizeOf } from '../shape.js';
import type { Storage } from '../storage.js';
import type { Tensor } from '../tensor.js';
import { kernel, wrap } from './util.js';
import { narrow, unsqueeze } from './views.js';

/**
 * Concatenates tensors along an existing dim (shapes must match elsewhere; dtypes promote).
 *
 * @example
 * lr.cat([lr.tensor([[1, 2]]), lr.tensor([[3, 4]])], 0); // [[1, 2], [3, 4]]
 */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new OpError('cat', 'expected a non-empty list of tensors');
  const first = tensors[0];
  const d = normalizeDim('cat', dim, first.rank);
  for (const t of tensors) {
    if (t.rank !== first.rank || t.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new OpError(
        'cat',
        `shapes must match except in dim ${d}: ${fmtShape(first.shape)} vs ${fmtShape(t.shape)}`,
      );
    }
  }
  if (first.rank === 0)
    throw new OpError('cat', 'zero-dimensional tensors cannot be concatenated; use stack');
  return runOp('cat', tensors, { dim: d }, () => {
    const dtype = tensors.map((t) => t.dtype).reduce(promoteTypes);
    const shape = [...first.shape];
    shape[d] = tensors.reduce((n, t) => n + t.shape[d], 0);
    const strides = contiguousStrides(shape);
    // each input is one program written into its slice of the output (casts fuse into it)
    const out = allocateLike(first, dtype, sizeOf(shape));
    let at = 0;
    for (const t of tensors) {
      if (t.size > 0) {
        const program = flatten(loadProgram(t.lazyView_(), dtype), t.device);
        kernel(
          'cat',
          first,
          'elementwise',
        )(program, { storage: out, shape: t.shape, strides, offset: at * strides[d] });
      }
      at += t.shape[d];
    }
    return wrap(out, shape);
  });
}

/**
 * Stacks same-shaped tensors along a new dim.
 *
 * @example
 * lr.stack([lr.tensor([1, 2]), lr.tensor([3, 4])], 1); // [[1, 3], [2, 4]]
 */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new OpError('stack', 'expected a non-empty list of tensors');
  const first = tensors[0];
  for (const t of tensors) {
    if (t.shape.length !== first.shape.length || t.shape.some((s, i) => s !== first.shape[i])) {
      throw new OpError(
        'stack',
        `all tensors must have the same shape: ${fmtShape(first.shape)} vs ${fmtShape(t.shape)}`,
      );
    }
  }
  for (const t of tensors) t.assertLive('stack');
  const d = normalizeDim('stack', dim, first.rank + 1);
  const expanded = tensors.map((t) => unsqueeze(t, d));
  const out = cat(expanded, d);
  for (const e of expanded) e.dispose();
  return out;
}

/**
 * Splits into views of `size` along dim (the last may be smaller), or into the given section sizes.
 *
 * @example
 * lr.split(lr.arange(5), 2).map((t) => t.shape); // [[2], [2], [1]]
 * lr.split(lr.arange(5), [1, 4]).map((t) => t.shape); // [[1], [4]]
 */
export function split(x: Tensor, sizeOrSections: number | readonly number[], dim = 0): Tensor[] {
  x.assertLive('split');
  const d = normalizeDim('split', dim, x.rank);
  const n = x.shape[d];
  let sizes: number[];
  if (typeof sizeOrSections === 'number') {
    if (!Number.isInteger(sizeOrSections) || sizeOrSections <= 0) {
      throw new OpError('split', `split size must be a positive integer, got ${sizeOrSections}`);
    }
    sizes = [];
    for (let at = 0; at < n; at += sizeOrSections) sizes.push(Math.min(sizeOrSections, n - at));
    if (n === 0) sizes.push(0);
  } else {
    sizes = [...sizeOrSections];
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total !== n || sizes.some((s) => !Number.isInteger(s) || s < 0)) {
      throw new OpError('split', `sections [${sizes.join(',')}] do not add up to dim ${d} of size ${n}`);
    }
  }
  const out: Tensor[] = [];
  let at = 0;
  for (const s of sizes) {
    out.push(narrow(x, d, at, s));
    at += s;
  }
  return out;
}

/**
 * Splits into `chunks` nearly equal views (like torch.chunk).
 *
 * @example
 * lr.chunk(lr.arange(6), 3).map((t) => t.shape); // [[2], [2], [2]]
 */
export function chunk(x: Tensor, chunks: number, dim = 0): Tensor[] {
  if (!Number.isInteger(chunks) || chunks <= 0)
    throw new OpError('chunk', `chunks must be a positive integer, got ${chunks}`);
  x.assertLive('chunk');
  const d = normalizeDim('chunk', dim, x.rank);
  return split(x, Math.max(1, Math.ceil(x.shape[d] / chunks)), d);
}

/**
 * cat's output, uninitialised: the inputs tile it exactly (an empty input covers nothing), so each
 * element is written once by one input's copy and a zero fill first would be a wasted kernel.
 */
function allocateLike(t: Tensor, dtype: DType, size: number): Storage {
  return getBackend(t.device).allocate(dtype, size);
}
