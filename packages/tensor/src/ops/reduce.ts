import type { ReduceOp } from '../backend.js';
import { runOp } from '../engine/dispatch.js';
import { flatten } from '../engine/lazy.js';
import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { loadProgram } from '../expr/program.js';
import { normalizeDim, normalizeDims, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { cast, div, exp, log, mul, sub } from './elementwise.js';
import { kernel, lazyViewAs, wrap } from './util.js';
import { reshape } from './views.js';

type Dims = number | readonly number[] | undefined;

interface Plan {
  dims: number[];
  kept: number[];
  outShape: number[];
  keptShape: number[];
  inner: number;
}

function plan(op: string, x: Tensor, dim: Dims, keepdim: boolean): Plan {
  const dims = normalizeDims(op, dim, x.rank).sort((a, b) => a - b);
  const kept = x.shape.map((_, i) => i).filter((i) => !dims.includes(i));
  const keptShape = kept.map((i) => x.shape[i]);
  const outShape = keepdim ? x.shape.map((d, i) => (dims.includes(i) ? 1 : d)) : keptShape;
  return { dims, kept, outShape, keptShape, inner: sizeOf(dims.map((i) => x.shape[i])) };
}

/** Runs the reduce kernel over `p.dims` of x (kept dims first, reduced dims last, as a view). */
function reduceKernel(op: string, rop: ReduceOp, x: Tensor, p: Plan, outDtype: Tensor['dtype']): Tensor {
  const perm = [...p.kept, ...p.dims];
  const view = lazyViewAs(
    x,
    perm.map((i) => x.shape[i]),
    perm.map((i) => x.strides[i]),
  );
  // a lazy chain feeding the reduction becomes its prologue: one kernel (sum of squares, say)
  const program = flatten(loadProgram(view), x.device);
  const outer = sizeOf(p.keptShape);
  return wrap(kernel(op, x, 'reduce')(rop, program, outer, p.inner, outDtype), p.outShape);
}

function checkNonEmpty(op: string, x: Tensor, p: Plan): void {
  if (p.inner === 0 && x.size !== 0) {
    throw new OpError(
      op,
      `cannot reduce over a zero-size dimension of a tensor of shape ${fmtShape(x.shape)}`,
    );
  }
  if (p.inner === 0) throw new OpError(op, `cannot reduce an empty tensor of shape ${fmtShape(x.shape)}`);
}

/**
 * Sum over `dim` (all dims when omitted). int/bool inputs sum to int32.
 *
 * @example
 * const x = lr.tensor([[1, 2], [3, 4]]);
 * lr.sum(x); // 10
 * lr.sum(x, 0); // [4, 6]
 * lr.sum(x, 1, true); // [[3], [7]]
 */
export function sum(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  const p = plan('sum', x, dim, keepdim);
  return runOp('sum', [x], { dims: p.dims, keepdim }, () =>
    reduceKernel('sum', 'sum', x, p, x.dtype === 'float32' ? 'float32' : 'int32'),
  );
}

/**
 * Product over `dim` (all dims when omitted).
 *
 * @example
 * lr.prod(lr.tensor([[1, 2], [3, 4]]), 1); // [2, 12]
 */
export function prod(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  const p = plan('prod', x, dim, keepdim);
  return runOp('prod', [x], { dims: p.dims, keepdim }, () =>
    reduceKernel('prod', 'prod', x, p, x.dtype === 'float32' ? 'float32' : 'int32'),
  );
}

/**
 * Mean over `dim`; always float32.
 *
 * @example
 * lr.mean(lr.tensor([[1, 2], [3, 4]]), 0); // [2, 3]
 */
export function mean(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  const p = plan('mean', x, dim, keepdim);
  return runOp('mean', [x], { dims: p.dims, keepdim }, () =>
    tidy(() => {
      const xf = cast(x, 'float32');
      return div(reduceKernel('mean', 'sum', xf, p, 'float32'), p.inner);
    }),
  );
}

function extreme(op: 'max' | 'min', x: Tensor, dim: Dims, keepdim: boolean): Tensor {
  const p = plan(op, x, dim, keepdim);
  checkNonEmpty(op, x, p);
  return runOp(op, [x], { dims: p.dims, keepdim }, () => reduceKernel(op, op, x, p, x.dtype));
}

/**
 * Maximum over `dim` (values only; see argmax). Ties: the gradient is shared equally.
 *
 * @example
 * lr.max(lr.tensor([[1, 5], [7, 2]]), 1); // [5, 7]
 */
export const max = (x: Tensor, dim?: Dims, keepdim = false) => extreme('max', x, dim, keepdim);
/**
 * Minimum over `dim` (values only; see argmin). Ties: the gradient is shared equally.
 *
 * @example
 * lr.min(lr.tensor([[1, 5], [7, 2]]), 1); // [1, 2]
 */
export const min = (x: Tensor, dim?: Dims, keepdim = false) => extreme('min', x, dim, keepdim);

function argExtreme(op: 'argmax' | 'argmin', x: Tensor, dim: number | undefined, keepdim: boolean): Tensor {
  x.assertLive(op);
  if (dim === undefined) {
    // over the flattened tensor, like PyTorch
    const flat = reshape(x, [-1]);
    const out = argExtreme(op, flat, 0, false);
    flat.dispose();
    return keepdim
      ? reshape(
          out,
          x.shape.map(() => 1),
        )
      : out;
  }
  const p = plan(op, x, normalizeDim(op, dim, x.rank), keepdim);
  checkNonEmpty(op, x, p);
  return runOp(op, [x], { dims: p.dims, keepdim }, () => reduceKernel(op, op, x, p, 'int32'));
}

/**
 * Index of the first maximum along `dim` (of the flattened tensor when dim is omitted), int32.
 *
 * @example
 * lr.argmax(lr.tensor([[1, 5], [7, 2]]), 1); // [1, 0] (int32)
 * lr.argmax(lr.tensor([[1, 5], [7, 2]])); // 2
 */
export const argmax = (x: Tensor, dim?: number, keepdim = false) => argExtreme('argmax', x, dim, keepdim);
/**
 * Index of the first minimum along `dim` (of the flattened tensor when dim is omitted), int32.
 *
 * @example
 * lr.argmin(lr.tensor([[1, 5], [7, 2]]), 1); // [0, 1]
 */
export const argmin = (x: Tensor, dim?: number, keepdim = false) => argExtreme('argmin', x, dim, keepdim);

/**
 * Variance over `dim` (unbiased by default, like PyTorch). Composed of recorded ops.
 *
 * @example
 * lr.var(lr.tensor([1, 2, 3, 4])); // 1.6666666
 * lr.var(lr.tensor([1, 2, 3, 4]), 0, { unbiased: false }); // 1.25
 */
export function variance(
  x: Tensor,
  dim?: Dims,
  options: { unbiased?: boolean; keepdim?: boolean } = {},
): Tensor {
  x.assertLive('var');
  const unbiased = options.unbiased ?? true;
  const p = plan('var', x, dim, true);
  const n = p.inner;
  return tidy(() => {
    const m = mean(x, p.dims, true);
    const d = sub(x, m);
    const ss = sum(mul(d, d), p.dims, options.keepdim ?? false);
    return div(ss, unbiased ? n - 1 : n);
  });
}

/**
 * Standard deviation over `dim`: `sqrt(var)` (unbiased by default, like PyTorch).
 *
 * @example
 * lr.std(lr.tensor([2, 4, 4, 4, 5, 5, 7, 9]), 0, { unbiased: false }); // 2
 */
export function std(x: Tensor, dim?: Dims, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
  x.assertLive('std');
  return tidy(() => variance(x, dim, options).sqrt());
}

/**
 * log(Σ exp(x)) over `dim`, computed stably (shifted by the max).
 *
 * @example
 * lr.logsumexp(lr.tensor([1000, 1000])); // 1000.6931 (no overflow)
 */
export function logsumexp(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  const p = plan('logsumexp', x, dim, keepdim);
  checkNonEmpty('logsumexp', x, p);
  return runOp('logsumexp', [x], { dims: p.dims, keepdim }, () =>
    tidy(() => {
      const xf = cast(x, 'float32');
      const m = max(xf, p.dims, true);
      // an all -inf row would give -inf - -inf = NaN: shift by 0 there instead
      const safeM = m.where(m.abs().lt(Number.POSITIVE_INFINITY), 0);
      const s = sum(exp(sub(xf, safeM)), p.dims, true);
      const out = log(s).add(safeM);
      return keepdim ? out : reshape(out, p.outShape);
    }),
  );
}

/**
 * softmax along `dim`: exp(x − max) / Σ exp(x − max).
 *
 * @example
 * lr.softmax(lr.tensor([[0, Math.log(3)]]), 1); // [[0.25, 0.75]]
 */
export function softmax(x: Tensor, dim: number): Tensor {
  const d = normalizeDim('softmax', dim, x.rank);
  return runOp('softmax', [x], { dim: d }, () => {
    if (d === x.rank - 1 && x.size > 0) {
      // one kernel per row set: the max, the sum of exponentials and the quotient in one pass
      // (with x's elementwise chain as its prologue) instead of three kernels and two reads more
      const cols = x.shape[d];
      const rows = x.size / cols;
      const view = lazyViewAs(x, x.shape, x.strides);
      const program = flatten(loadProgram(view, 'float32'), x.device);
      return wrap(kernel('softmax', x, 'softmax')(program, rows, cols), x.shape);
    }
    return tidy(() => {
      const xf = cast(x, 'float32');
      const e = exp(sub(xf, max(xf, d, true)));
      return div(e, sum(e, d, true));
    });
  });
}

/**
 * log(softmax(x)) along `dim`, computed as x − logsumexp(x).
 *
 * @example
 * lr.logSoftmax(lr.tensor([0, 0]), 0); // [-0.6931472, -0.6931472]
 */
export function logSoftmax(x: Tensor, dim: number): Tensor {
  const d = normalizeDim('logSoftmax', dim, x.rank);
  return runOp('logSoftmax', [x], { dim: d }, () =>
    tidy(() => sub(cast(x, 'float32'), logsumexp(x, d, true))),
  );
}
