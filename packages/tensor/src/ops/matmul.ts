import { checkInputs, runOp } from '../engine/dispatch.js';
import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { broadcastShapes, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { kernel, wrap } from './util.js';
import { expand, reshape } from './views.js';

/**
 * Matrix product with PyTorch semantics: 1-D·1-D is a dot product, a 1-D operand gets a dim
 * prepended (left) or appended (right) and removed afterwards, and leading (batch) dims broadcast.
 * float32 only. Transposed operands are read through their strides without a copy.
 *
 * @example
 * lr.matmul(lr.tensor([[1, 2]]), lr.tensor([[3], [4]])); // [[11]]
 * lr.matmul(lr.randn([8, 2, 3]), lr.randn([3, 5])).shape; // [8, 2, 5] (batch broadcast)
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank === 0 || b.rank === 0) {
    throw new OpError(
      'matmul',
      `both operands need at least 1 dim, got ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`,
    );
  }
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new OpError('matmul', `expected float32 operands, got ${a.dtype} @ ${b.dtype}`);
  }
  const k = a.shape[a.rank - 1];
  const kb = b.shape[b.rank === 1 ? 0 : b.rank - 2];
  if (k !== kb)
    throw new OpError('matmul', `inner dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`);
  return runOp('matmul', [a, b], {}, () => tidy(() => matmulCompute(a, b)));
}

function matmulCompute(a: Tensor, b: Tensor): Tensor {
  const a2 = a.rank === 1 ? reshape(a, [1, a.shape[0]]) : a;
  const b2 = b.rank === 1 ? reshape(b, [b.shape[0], 1]) : b;
  const m = a2.shape[a2.rank - 2];
  const k = a2.shape[a2.rank - 1];
  const n = b2.shape[b2.rank - 1];
  const batchA = a2.shape.slice(0, -2);
  const batchB = b2.shape.slice(0, -2);
  const batch = broadcastShapes('matmul', batchA, batchB);
  if (batchB.length === 0 && batch.length > 0) {
    // [..., M, K] @ [K, N]: fold the batch into M (no copy when a is contiguous enough)
    const a3 = reshape(a2, [1, sizeOf(batch) * m, k]);
    const b3 = reshape(b2, [1, k, n]);
    const out = wrap(kernel('matmul', a, 'matmul')(a3.view_(), b3.view_(), 1, sizeOf(batch) * m, k, n), [
      ...batch,
      m,
      n,
    ]);
    return finalShape(out, a, b, batch, m, n);
  }
  const bsz = sizeOf(batch);
  const a3 = reshape(expand(a2, [...batch, m, k]), [bsz, m, k]);
  const b3 = reshape(expand(b2, [...batch, k, n]), [bsz, k, n]);
  const out = wrap(kernel('matmul', a, 'matmul')(a3.view_(), b3.view_(), bsz, m, k, n), [...batch, m, n]);
  return finalShape(out, a, b, batch, m, n);
}

function finalShape(
  out: Tensor,
  a: Tensor,
  b: Tensor,
  batch: readonly number[],
  m: number,
  n: number,
): Tensor {
  if (a.rank > 1 && b.rank > 1) return out;
  const shape = [...batch];
  if (a.rank > 1) shape.push(m);
  if (b.rank > 1) shape.push(n);
  return reshape(out, shape);
}

/** Optional terms of `addmm`. */
export interface AddmmOptions {
  /** [N], added to every row. */
  bias?: Tensor | null;
  /** The output's shape [..., M, N], added elementwise (a residual connection). */
  residual?: Tensor | null;
  /** Scale of the product (default 1). */
  alpha?: number;
}

/**
 * alpha·(a @ b) + bias + residual as one kernel: the bias and residual are added where the matmul
 * stores its result (WebGPU), instead of by a second elementwise pass over the [..., M, N] output.
 * a is [..., M, K] (rank ≥ 1, batch dims folded into M), b is [K, N]; bias must be [N] and the
 * residual the output's shape [..., M, N] exactly (no broadcasting). float32 only.
 *
 * @example
 * const y = lr.addmm(x, w.T, { bias: b }); // F.linear: x [B, in], w [out, in], b [out]
 * lr.addmm(lr.tensor([[1, 2]]), lr.tensor([[3], [4]]), { bias: lr.tensor([1]), alpha: 2 }); // [[23]]
 */
export function addmm(a: Tensor, b: Tensor, options: AddmmOptions = {}): Tensor {
  const bias = options.bias ?? null;
  const residual = options.residual ?? null;
  const alpha = options.alpha ?? 1;
  const inputs = [a, b, bias, residual].filter((t): t is Tensor => t !== null);
  checkInputs('addmm', inputs);
  for (const t of inputs) {
    if (t.dtype !== 'float32') throw new OpError('addmm', `expected float32 tensors, got ${t.dtype}`);
  }
  if (a.rank < 1 || b.rank !== 2) {
    throw new OpError(
      'addmm',
      `expected a [..., M, K] @ b [K, N], got ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`,
    );
  }
  const k = a.shape[a.rank - 1];
  const n = b.shape[1];
  if (b.shape[0] !== k)
    throw new OpError('addmm', `inner dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`);
  const outShape = [...a.shape.slice(0, -1), n];
  if (bias && (bias.rank !== 1 || bias.shape[0] !== n))
    throw new OpError('addmm', `bias must be [${n}], got ${fmtShape(bias.shape)}`);
  if (residual && (residual.rank !== outShape.length || residual.shape.some((d, i) => d !== outShape[i]))) {
    throw new OpError(
      'addmm',
      `residual must be the output's shape ${fmtShape(outShape)}, got ${fmtShape(residual.shape)}`,
    );
  }
  if (!Number.isFinite(alpha)) throw new OpError('addmm', `alpha must be a finite number, got ${alpha}`);
  const attrs = { alpha, bias: bias !== null, residual: residual !== null };
  return runOp('addmm', inputs, attrs, () =>
    tidy(() => {
      const rows = a.rank === 1 ? 1 : sizeOf(a.shape.slice(0, -1));
      const a3 = reshape(a, [1, rows, k]);
      const b3 = reshape(b, [1, k, n]);
      const r3 = residual ? reshape(residual, [1, rows, n]) : null;
      const out = kernel('addmm', a, 'matmulEpilogue')(a3.view_(), b3.view_(), 1, rows, k, n, {
        bias: bias ? bias.view_() : null,
        residual: r3 ? r3.view_() : null,
        alpha,
      });
      return wrap(out, outShape);
    }),
  );
}
