import * as lr from '../src/index.js';

/**
 * The composed attention the fused op must equal: matmul → scale → where/add mask → softmax →
 * matmul, with GQA as a broadcast of each kv head over its group of query heads (reshape, no
 * copy), and top-left causal masking. Shapes [B, H, L, E] / [B, Hkv, S, E].
 */
export function composedAttention(
  q: lr.Tensor,
  k: lr.Tensor,
  v: lr.Tensor,
  o: { mask?: lr.Tensor | null; causal?: boolean; scale?: number } = {},
): lr.Tensor {
  const [b, h, l, e] = q.shape;
  const [, hkv, s] = k.shape;
  const ev = v.shape[3];
  const g = h / hkv;
  const qg = q.reshape([b, hkv, g, l, e]);
  const kg = k.reshape([b, hkv, 1, s, e]);
  const vg = v.reshape([b, hkv, 1, s, ev]);
  let sc = lr.matmul(qg, kg.transpose(-2, -1)).mul(o.scale ?? 1 / Math.sqrt(e)); // [b, hkv, g, l, s]
  if (o.causal) {
    const i = lr.arange(l, undefined, 1, { device: q.device }).reshape([l, 1]);
    const j = lr.arange(s, undefined, 1, { device: q.device }).reshape([1, s]);
    sc = lr.where(j.le(i), sc, Number.NEGATIVE_INFINITY);
  }
  if (o.mask) {
    const m = o.mask.expand([b, h, l, s]).reshape([b, hkv, g, l, s]);
    sc = m.dtype === 'bool' ? lr.where(m, sc, Number.NEGATIVE_INFINITY) : sc.add(m);
  }
  return lr.matmul(sc.softmax(-1), vg).reshape([b, h, l, ev]);
}

/** Largest |a − b| over two arrays, NaN-aware: a NaN on one side only is Infinity. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) return Number.POSITIVE_INFINITY;
      continue;
    }
    m = Math.max(m, Math.abs(x - y));
  }
  return m;
}
