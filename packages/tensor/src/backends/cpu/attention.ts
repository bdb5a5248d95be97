import type { AttentionDropout, AttentionParams, KernelTable } from '../../backend.js';
import { attentionKeep } from '../../philox.js';
import type { View } from '../../storage.js';
import { allocate } from './storage.js';
import { arrayOf } from './strided.js';

/**
 * Fused attention, the reference loops: per query row, the scaled masked scores against every
 * key in float64 (two passes: max, then Σ exp), the row's logsumexp, and the output. The backward
 * recomputes each row's probabilities from the logsumexp (p = exp(s − lse)), as the GPU kernels
 * do, and accumulates dq, dk, dv in float64. A fully masked row has max −∞: its output is NaN and
 * its lse −∞, so its p = exp(−∞ − (−∞)) is NaN in the backward too, as in the composed graph.
 * Dropout (params.dropout) multiplies each probability by z = keep ? scale : 0 after the row's
 * sum is taken (the lse is the undropped softmax's): out = Σ p·z·v / Σ p; the backward has
 * dv = Σ p·z·g, ds = p·(z·(g·v) − D) with D = rowsum(g∘out) as without dropout.
 */

/** z of (row bh·L + i, key j): the dropout factor (1 without dropout). */
function dropFactor(drop: AttentionDropout | null | undefined, bh: number, i: number, j: number): number {
  if (!drop) return 1;
  return attentionKeep(bh, i, j, drop.key.key0, drop.key.key1, drop.threshold) ? drop.scale : 0;
}

interface Dims {
  b: number;
  h: number;
  hkv: number;
  l: number;
  s: number;
  e: number;
  ev: number;
}

function dimsOf(q: View, k: View, v: View): Dims {
  const [b, h, l, e] = q.shape;
  return { b, h, hkv: k.shape[1], l, s: k.shape[2], e, ev: v.shape[3] };
}

/**
 * Writes row (bi, hi, i)'s masked scaled scores into `out` (−∞ where masked) and, into `hard`, 1
 * where the key is causal- or bool-masked (the composed graph's `where`: its gradient there is 0).
 */
function scoreRow(
  d: Dims,
  q: View,
  k: View,
  mask: View | null,
  p: AttentionParams,
  bi: number,
  hi: number,
  i: number,
  out: Float64Array,
  hard: Uint8Array,
): void {
  const qa = arrayOf(q);
  const ka = arrayOf(k);
  const ma = mask ? arrayOf(mask) : null;
  const kh = Math.floor(hi / (d.h / d.hkv));
  const qo = q.offset + bi * q.strides[0] + hi * q.strides[1] + i * q.strides[2];
  const ko = k.offset + bi * k.strides[0] + kh * k.strides[1];
  const mo = mask ? mask.offset + bi * mask.strides[0] + hi * mask.strides[1] + i * mask.strides[2] : 0;
  const bool = mask?.storage.dtype === 'bool';
  for (let j = 0; j < d.s; j++) {
    hard[j] = 0;
    if (p.causal && j > i) {
      out[j] = Number.NEGATIVE_INFINITY;
      hard[j] = 1;
      continue;
    }
    let dot = 0;
    for (let c = 0; c < d.e; c++)
      dot += qa[qo + c * q.strides[3]] * ka[ko + j * k.strides[2] + c * k.strides[3]];
    let sc = Math.fround(dot) * p.scale;
    if (mask && ma) {
      const m = ma[mo + j * mask.strides[3]];
      if (bool && !m) {
        sc = Number.NEGATIVE_INFINITY;
        hard[j] = 1;
      } else if (!bool) sc += m;
    }
    out[j] = sc;
  }
}

export const attention: KernelTable['attention'] = (q, k, v, mask, params) => {
  const d = dimsOf(q, k, v);
  const va = arrayOf(v);
  const rows = d.b * d.h * d.l;
  const out = allocate('float32', rows * d.ev);
  const oa = out.handle as Float32Array;
  const lse = params.lse ? allocate('float32', rows) : null;
  const sc = new Float64Array(d.s);
  const hard = new Uint8Array(d.s);
  const acc = new Float64Array(d.ev);
  for (let bi = 0; bi < d.b; bi++) {
    for (let hi = 0; hi < d.h; hi++) {
      const kh = Math.floor(hi / (d.h / d.hkv));
      const vo = v.offset + bi * v.strides[0] + kh * v.strides[1];
      for (let i = 0; i < d.l; i++) {
        scoreRow(d, q, k, mask, params, bi, hi, i, sc, hard);
        let mx = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < d.s; j++) if (sc[j] > mx || Number.isNaN(sc[j])) mx = sc[j];
        let sum = 0;
        acc.fill(0);
        const bh = bi * d.h + hi;
        for (let j = 0; j < d.s; j++) {
          let w = Math.exp(sc[j] - mx);
          sum += w;
          w *= dropFactor(params.dropout, bh, i, j);
          if (w === 0) continue; // a masked (or dropped) key adds nothing (and no 0·∞ from v)
          for (let c = 0; c < d.ev; c++) acc[c] += w * va[vo + j * v.strides[2] + c * v.strides[3]];
        }
        const row = (bi * d.h + hi) * d.l + i;
        // all −∞ (or a NaN score): NaN, as softmax of such a row
        const bad = mx === Number.NEGATIVE_INFINITY || Number.isNaN(mx) || mx === Number.POSITIVE_INFINITY;
        for (let c = 0; c < d.ev; c++) oa[row * d.ev + c] = bad ? Number.NaN : acc[c] / sum;
        if (lse)
          (lse.handle as Float32Array)[row] = mx === Number.NEGATIVE_INFINITY ? mx : mx + Math.log(sum);
      }
    }
  }
  return { out, lse };
};

export const attentionBackward: KernelTable['attentionBackward'] = (
  q,
  k,
  v,
  mask,
  out,
  grad,
  lse,
  params,
) => {
  const d = dimsOf(q, k, v);
  const [qa, ka, va, oa, ga, la] = [q, k, v, out, grad, lse].map(arrayOf);
  const dq = new Float64Array(d.b * d.h * d.l * d.e);
  const dk = new Float64Array(d.b * d.hkv * d.s * d.e);
  const dv = new Float64Array(d.b * d.hkv * d.s * d.ev);
  const sc = new Float64Array(d.s);
  const hard = new Uint8Array(d.s);
  const at = (x: View, bi: number, hi: number, r: number, c: number): number =>
    x.offset + bi * x.strides[0] + hi * x.strides[1] + r * x.strides[2] + c * x.strides[3];
  for (let bi = 0; bi < d.b; bi++) {
    for (let hi = 0; hi < d.h; hi++) {
      const kh = Math.floor(hi / (d.h / d.hkv));
      for (let i = 0; i < d.l; i++) {
        scoreRow(d, q, k, mask, params, bi, hi, i, sc, hard);
        const m = la[lse.offset + bi * lse.strides[0] + hi * lse.strides[1] + i * lse.strides[2]];
        let dsum = 0; // D = rowsum(grad·out)
        for (let c = 0; c < d.ev; c++) dsum += ga[at(grad, bi, hi, i, c)] * oa[at(out, bi, hi, i, c)];
        const qrow = ((bi * d.h + hi) * d.l + i) * d.e;
        const dead = m === Number.NEGATIVE_INFINITY; // no key: NaN, as the composed softmax
        for (let j = 0; j < d.s; j++) {
          const p = hard[j] ? (dead ? Number.NaN : 0) : Math.exp(sc[j] - m);
          if (p === 0) continue;
          const z = dropFactor(params.dropout, bi * d.h + hi, i, j);
          let dp = 0;
          const vrow = ((bi * d.hkv + kh) * d.s + j) * d.ev;
          for (let c = 0; c < d.ev; c++) {
            const g = ga[at(grad, bi, hi, i, c)];
            dp += g * va[at(v, bi, kh, j, c)];
            dv[vrow + c] += p * z * g;
          }
          const ds = hard[j] ? 0 : p * (z * dp - dsum) * params.scale;
          const krow = ((bi * d.hkv + kh) * d.s + j) * d.e;
          for (let c = 0; c < d.e; c++) {
            dq[qrow + c] += ds * ka[at(k, bi, kh, j, c)];
            dk[krow + c] += ds * qa[at(q, bi, hi, i, c)];
          }
        }
      }
    }
  }
  const store = (x: Float64Array) => {
    const s = allocate('float32', x.length);
    (s.handle as Float32Array).set(x);
    return s;
  };
  return { dq: store(dq), dk: store(dk), dv: store(dv) };
};
