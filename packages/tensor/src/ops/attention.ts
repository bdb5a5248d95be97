import type { AttentionParams } from '../backend.js';
import { checkInputs, runOp, willRecord } from '../engine/dispatch.js';
import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { broadcastShapes } from '../shape.js';
import type { Tensor } from '../tensor.js';
import type { AttentionAttrs } from './attrs.js';
import { kernel, wrap } from './util.js';
import { expand, reshape } from './views.js';

/**
 * Fused scaled dot-product attention: one kernel computes softmax(q·kᵀ·scale + mask)·v row by
 * row with an online softmax, so no [.., L, S] score matrix is ever stored (the composition
 * matmul → where → softmax → matmul keeps two of them per head for its gradient). The forward
 * keeps each row's logsumexp [B, H, L] (only when autograd records the op) and the backward
 * kernel recomputes the probabilities from it.
 */

/** Options of `scaledDotProductAttention` (PyTorch's names, plus the short aliases). */
export interface ScaledDotProductAttentionOptions {
  /**
   * bool: true where attention is ALLOWED (PyTorch's convention); float32: added to the scores.
   * Broadcast to [..., L, S] through 0-strides (never materialised).
   */
  attnMask?: Tensor | null;
  /** Alias of `attnMask`. */
  mask?: Tensor | null;
  /** Query i attends to keys j ≤ i only (top-left aligned, as PyTorch). */
  isCausal?: boolean;
  /** Alias of `isCausal`. */
  causal?: boolean;
  /** Score scale; default 1/√E. */
  scale?: number;
  /**
   * Grouped-query attention: q [..., H, L, E], k/v [..., Hkv, S, E] with H % Hkv = 0; query head
   * h reads kv head ⌊h / (H/Hkv)⌋ (no copy of the kv heads).
   */
  enableGqa?: boolean;
}

/** The inputs read as the kernel's 4-D views, and the shapes to map gradients back. */
interface Layout {
  q4: Tensor;
  k4: Tensor;
  v4: Tensor;
  m4: Tensor | null;
  /** q's shape broadcast over the batch dims (the output's batch shape with L, E). */
  qShape: number[];
  kShape: number[];
  vShape: number[];
  outShape: number[];
  params: AttentionParams;
}

const OP = 'scaledDotProductAttention';

/** [..., a, b] → [B, H, a, b]: leading dims merged (views for rank ≤ 4; a copy only when strides forbid). */
function to4d(t: Tensor, batch: readonly number[], tail: readonly number[] = t.shape.slice(-2)): Tensor {
  const e = expand(t, [...batch, ...tail]);
  if (batch.length === 2) return e;
  const h = batch[batch.length - 1] ?? 1;
  const b = batch.slice(0, -1).reduce((x, y) => x * y, 1);
  const r = reshape(e, [b, h, ...tail]);
  if (e !== t) e.dispose();
  return r;
}

function layout(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: Tensor | null,
  o: ScaledDotProductAttentionOptions,
): Layout {
  for (const [n, t] of [
    ['q', q],
    ['k', k],
    ['v', v],
  ] as const) {
    if (t.rank < 2)
      throw new OpError(OP, `${n} needs at least 2 dims [..., len, dim], got ${fmtShape(t.shape)}`);
    if (t.dtype !== 'float32') throw new OpError(OP, `${n} must be float32, got ${t.dtype}`);
  }
  const e = q.shape[q.rank - 1];
  const l = q.shape[q.rank - 2];
  const s = k.shape[k.rank - 2];
  const ev = v.shape[v.rank - 1];
  if (k.shape[k.rank - 1] !== e || v.shape[v.rank - 2] !== s) {
    throw new OpError(
      OP,
      `expected q [..., L, E], k [..., S, E], v [..., S, Ev], got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`,
    );
  }
  const qb = q.shape.slice(0, -2);
  const kvb = broadcastShapes(OP, k.shape.slice(0, -2), v.shape.slice(0, -2));
  let batch: number[];
  let kvBatch: number[];
  if (o.enableGqa) {
    if (qb.length < 1 || kvb.length < 1) {
      throw new OpError(
        OP,
        `enableGqa needs a heads dim: q [..., H, L, E], k/v [..., Hkv, S, E], got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}`,
      );
    }
    const h = qb[qb.length - 1];
    const hkv = kvb[kvb.length - 1];
    if (hkv === 0 || h % hkv !== 0) {
      throw new OpError(OP, `enableGqa: query heads (${h}) must be a multiple of kv heads (${hkv})`);
    }
    const outer = broadcastShapes(OP, qb.slice(0, -1), kvb.slice(0, -1));
    batch = [...outer, h];
    kvBatch = [...outer, hkv];
  } else {
    batch = broadcastShapes(OP, qb, kvb);
    kvBatch = batch;
  }
  const outShape = [...batch, l, ev];
  let m4: Tensor | null = null;
  if (mask) {
    if (mask.dtype !== 'bool' && mask.dtype !== 'float32') {
      throw new OpError(
        OP,
        `the mask must be bool (true = may attend) or float32 (added), got ${mask.dtype}`,
      );
    }
    const scores = [...batch, l, s];
    const b = broadcastShapes(OP, mask.shape, scores);
    if (b.length !== scores.length || b.some((d, i) => d !== scores[i])) {
      throw new OpError(
        OP,
        `the mask ${fmtShape(mask.shape)} does not broadcast to the scores ${fmtShape(scores)}`,
      );
    }
    m4 = to4d(mask, batch, [l, s]);
  }
  const scale = o.scale ?? 1 / Math.sqrt(e);
  if (!Number.isFinite(scale)) throw new OpError(OP, `scale must be a finite number, got ${scale}`);
  return {
    q4: to4d(q, batch),
    k4: to4d(k, kvBatch),
    v4: to4d(v, kvBatch),
    m4,
    qShape: [...batch, l, e],
    kShape: [...kvBatch, s, e],
    vShape: [...kvBatch, s, ev],
    outShape,
    params: { scale, causal: Boolean(o.isCausal ?? o.causal), lse: false },
  };
}

/**
 * softmax(q·kᵀ·scale + mask)·v as one fused op: q [..., L, E], k [..., S, E], v [..., S, Ev] →
 * [..., L, Ev] (batch dims broadcast; with `enableGqa`, H query heads over Hkv kv heads). q, k, v
 * are read through their strides (GPT-2's heads, transposed views of one projection, are not
 * copied), and the mask through 0-strides. A row whose keys are all masked gives NaN, as the
 * composed softmax does. Differentiable in q, k and v (a float mask that requires grad is refused
 * by the gradient). No dropout: `F.scaledDotProductAttention` composes the ops when dropoutP > 0.
 * float32 only. Batch ranks above 2 are merged by a reshape (a copy when the strides forbid a view).
 *
 * @example
 * const q = lr.randn([2, 4, 5, 8]); // [B, H, L, E]
 * lr.scaledDotProductAttention(q, q, q, { causal: true }).shape; // [2, 4, 5, 8]
 * const kv = lr.randn([2, 2, 5, 8]); // 2 kv heads shared by 4 query heads
 * lr.scaledDotProductAttention(q, kv, kv, { enableGqa: true }).shape; // [2, 4, 5, 8]
 */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: ScaledDotProductAttentionOptions = {},
): Tensor {
  const mask = options.attnMask ?? options.mask ?? null;
  const inputs = mask ? [q, k, v, mask] : [q, k, v];
  checkInputs(OP, inputs);
  const lay = layout(q, k, v, mask, options);
  const attrs: AttentionAttrs = {
    scale: lay.params.scale,
    causal: lay.params.causal,
    enableGqa: Boolean(options.enableGqa),
    mask: mask ? (mask.dtype === 'bool' ? 'bool' : 'float') : null,
  };
  const record = willRecord(inputs);
  const out = runOp(OP, inputs, attrs, () => {
    const run = kernel(OP, q, 'attention');
    const r = run(lay.q4.view_(), lay.k4.view_(), lay.v4.view_(), lay.m4?.view_() ?? null, {
      ...lay.params,
      lse: record,
    });
    if (r.lse) attrs.lse = wrap(r.lse, lay.qShape.slice(0, -1));
    return wrap(r.out, lay.outShape);
  });
  disposeLayout(lay, [q, k, v, mask]);
  attrs.lse?.dispose(); // autograd saved its own view
  return out;
}

function disposeLayout(lay: Layout, originals: readonly (Tensor | null)[]): void {
  for (const t of [lay.q4, lay.k4, lay.v4, lay.m4]) if (t && !originals.includes(t)) t.dispose();
}

/** Gradients of `scaledDotProductAttention`, shaped like q, k, v broadcast over the batch dims. */
export interface AttentionInputGrads {
  /** The batch-broadcast q's shape. */
  readonly q: Tensor;
  /** The batch-broadcast k's shape (kv heads under GQA). */
  readonly k: Tensor;
  /** The batch-broadcast v's shape. */
  readonly v: Tensor;
}

/**
 * The gradients of `scaledDotProductAttention` from the output's gradient, the output and the
 * rows' logsumexp that the forward kept: one backward kernel (FlashAttention-2's recomputation,
 * no [L, S] matrix stored). For gradient rules: the results have q's, k's and v's shapes broadcast
 * over the batch dims (sum them back where an input was broadcast). Not recorded.
 *
 * @example
 * const g = lr.scaledDotProductAttentionBackward(grad, q, k, v, out, lse, { causal: true });
 * g.q.shape; // q.shape
 */
export function scaledDotProductAttentionBackward(
  grad: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  options: ScaledDotProductAttentionOptions = {},
): AttentionInputGrads {
  const mask = options.attnMask ?? options.mask ?? null;
  checkInputs(OP, [grad, q, k, v, out, lse, ...(mask ? [mask] : [])]);
  const lay = layout(q, k, v, mask, options);
  const shapeOk = (t: Tensor, shape: readonly number[]) =>
    t.rank === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (!shapeOk(grad, lay.outShape) || !shapeOk(out, lay.outShape)) {
    throw new OpError(
      OP,
      `the output and its gradient must be ${fmtShape(lay.outShape)}, got ${fmtShape(out.shape)} and ${fmtShape(grad.shape)}`,
    );
  }
  if (!shapeOk(lse, lay.qShape.slice(0, -1))) {
    throw new OpError(OP, `lse must be ${fmtShape(lay.qShape.slice(0, -1))}, got ${fmtShape(lse.shape)}`);
  }
  const res = tidy(() => {
    const batch = lay.qShape.slice(0, -2);
    const o4 = to4d(out, batch).view_();
    const g4 = to4d(grad, batch).view_();
    const l4 = reshape(lse, [...lay.q4.shape.slice(0, 3)]).view_();
    const r = kernel(OP, q, 'attentionBackward')(
      lay.q4.view_(),
      lay.k4.view_(),
      lay.v4.view_(),
      lay.m4?.view_() ?? null,
      o4,
      g4,
      l4,
      lay.params,
    );
    return { q: wrap(r.dq, lay.qShape), k: wrap(r.dk, lay.kShape), v: wrap(r.dv, lay.vShape) };
  });
  disposeLayout(lay, [q, k, v, mask]);
  return res;
}
