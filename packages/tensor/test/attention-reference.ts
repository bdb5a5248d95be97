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

/** One attention shape: batch, kv heads and the query heads per kv head (GQA), lengths, dims, masking. */
export interface AttentionCase {
  b: number;
  hkv: number;
  g: number;
  l: number;
  s: number;
  e: number;
  ev: number;
  causal: boolean;
  mask: 'none' | 'bool' | 'float';
}

/**
 * Random q [B, H, L, E], k/v [B, Hkv, S, E|Ev] and the case's mask, drawn in that order from
 * `seed`: a bool mask [B, 1, L, S] keeps keys where rand > `boolCut` (rows may be fully masked),
 * a float mask [1, H, L, S] is rand with −∞ where rand > `floatCut`.
 */
export function attentionInputs(
  c: AttentionCase,
  seed: number,
  cuts: { boolCut: number; floatCut: number },
): { q: lr.Tensor; k: lr.Tensor; v: lr.Tensor; mask: lr.Tensor | null } {
  lr.manualSeed(seed);
  const h = c.hkv * c.g;
  const q = lr.randn([c.b, h, c.l, c.e]);
  const k = lr.randn([c.b, c.hkv, c.s, c.e]);
  const v = lr.randn([c.b, c.hkv, c.s, c.ev]);
  let mask: lr.Tensor | null = null;
  if (c.mask === 'bool') mask = lr.rand([c.b, 1, c.l, c.s]).gt(cuts.boolCut);
  if (c.mask === 'float') {
    const r = lr.rand([1, h, c.l, c.s]);
    mask = lr.where(r.gt(cuts.floatCut), Number.NEGATIVE_INFINITY, r);
  }
  return { q, k, v, mask };
}
