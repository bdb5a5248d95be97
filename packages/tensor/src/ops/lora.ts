import { runOp } from '../engine/dispatch.js';
import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { kernel, wrap } from './util.js';
import { reshape } from './views.js';

/** Options of `loraExpand`. */
export interface LoraExpandOptions {
  /** Factor of the product (LoRA's α/r); 1 by default. */
  scale?: number;
  /** int32 [B]: per sample, which slice of a stacked `w` [S, r, N] to use (mixed-adapter batches). */
  index?: Tensor;
}

/**
 * `base + scale · h·w` in one kernel: LoRA's expand step, scaled and added into the base layer's
 * output as it is stored (no [..., N] product of its own, no separate add). Without `index`,
 * h is [..., r] and w [r, N] (pass `B.T` for PEFT's B [N, r]: read through its strides); with
 * `index` (int32 [B]), h is [B, ..., r] and w a stack [S, r, N] from which each sample takes
 * `w[index[b]]` inside the kernel (Punica's BGMV, no per-sample copy of w). base has the
 * output's shape [..., N]. float32 only. Differentiable in base, h and w.
 *
 * @example
 * const base = lr.ones([2, 3]);
 * const h = lr.tensor([[1], [2]]); // [2, r = 1]
 * lr.loraExpand(base, h, lr.tensor([[1, 0, -1]]), { scale: 0.5 }); // [[1.5, 1, 0.5], [2, 1, 0]]
 */
export function loraExpand(base: Tensor, h: Tensor, w: Tensor, options: LoraExpandOptions = {}): Tensor {
  return loraMatmulOp('loraExpand', base, h, w, options.index ?? null, options.scale ?? 1);
}

/**
 * Per-sample matmul with gathered weights: out[b] = x[b] · w[index[b]] for x [B, ..., K], a stack
 * w [S, K, N] and int32 index [B] → [B, ..., N]. The weight of each sample is read from the
 * stack inside the kernel (no [B, K, N] gathered copy). Differentiable in x and w (w's gradient
 * adds up the samples that share a slice).
 *
 * @example
 * const w = lr.stack([lr.eye(2), lr.eye(2).mul(10)]); // [2, 2, 2]
 * const x = lr.ones([3, 1, 2]);
 * lr.gatherMatmul(x, w, lr.tensor([1, 0, 1], { dtype: 'int32' })); // [[[10, 10]], [[1, 1]], [[10, 10]]]
 */
export function gatherMatmul(x: Tensor, w: Tensor, index: Tensor): Tensor {
  return loraMatmulOp('gatherMatmul', null, x, w, index, 1);
}

function loraMatmulOp(
  op: 'loraExpand' | 'gatherMatmul',
  base: Tensor | null,
  h: Tensor,
  w: Tensor,
  index: Tensor | null,
  scale: number,
): Tensor {
  for (const [what, t] of [
    ['base', base],
    ['input', h],
    ['weight', w],
  ] as const) {
    if (t && t.dtype !== 'float32') throw new OpError(op, `${what} must be float32, got ${t.dtype}`);
  }
  const r = h.shape[h.rank - 1];
  if (index) {
    if (index.dtype !== 'int32' || index.rank !== 1)
      throw new OpError(op, `index must be a 1-D int32 tensor, got ${index.dtype} ${fmtShape(index.shape)}`);
    if (h.rank < 2 || h.shape[0] !== index.shape[0])
      throw new OpError(
        op,
        `input must be [B, ..., K] with B = ${index.shape[0]} (the index's length), got ${fmtShape(h.shape)}`,
      );
    if (w.rank !== 3 || w.shape[1] !== r)
      throw new OpError(op, `weight must be a stack [S, ${r}, N], got ${fmtShape(w.shape)}`);
  } else if (h.rank < 1 || w.rank !== 2 || w.shape[0] !== r) {
    throw new OpError(
      op,
      `expected input [..., K] and weight [K, N], got ${fmtShape(h.shape)} and ${fmtShape(w.shape)}`,
    );
  }
  const n = w.shape[w.rank - 1];
  const shape = [...h.shape.slice(0, -1), n];
  if (base && fmtShape(base.shape) !== fmtShape(shape))
    throw new OpError(
      op,
      `base must have the output's shape ${fmtShape(shape)}, got ${fmtShape(base.shape)}`,
    );
  const batch = index ? h.shape[0] : 1;
  const m = sizeOf(h.shape.slice(index ? 1 : 0, -1));
  const inputs = [base, h, w, index].filter((t): t is Tensor => t !== null);
  const attrs = { scale, indexed: index !== null };
  return runOp(op, inputs, attrs, () =>
    tidy(() => {
      const h3 = reshape(h, [batch, m, r]).view_();
      const w3 = (index ? w : reshape(w, [1, r, n])).view_();
      const b3 = base ? reshape(base, [batch, m, n]).view_() : null;
      const k = kernel(op, h, 'loraMatmul');
      return wrap(k(h3, w3, index ? index.view_() : null, b3, scale, batch, m, r, n), shape);
    }),
  );
}
