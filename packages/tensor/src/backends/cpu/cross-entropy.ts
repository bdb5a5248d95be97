import type { KernelTable } from '../../backend.js';
import { storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/**
 * Cross-entropy per row (the reference loops): the max, Σ exp(x − max) and Σ x in float64 over
 * the row, then the loss, then (with `writeGrad`) the row overwritten by its gradient
 * softmax − target. Each element is read before it is written, so x may be its own output.
 */
export const crossEntropyRows: KernelTable['crossEntropyRows'] = (x, labels, rows, cols, params) => {
  const { ignoreIndex, labelSmoothing: eps, writeGrad } = params;
  const src = arrayOf(x) as Float32Array;
  const lab = arrayOf(labels) as Int32Array;
  const labStride = labels.strides[0] ?? 0;
  const out = new Float32Array(rows);
  const off = eps / cols;
  for (let r = 0; r < rows; r++) {
    const base = x.offset + r * cols;
    const t = lab[labels.offset + r * labStride];
    if (t === ignoreIndex) {
      out[r] = 0;
      if (writeGrad) src.fill(0, base, base + cols);
      continue;
    }
    let m = Number.NEGATIVE_INFINITY;
    let sumX = 0;
    for (let j = 0; j < cols; j++) {
      const v = src[base + j];
      if (v > m || Number.isNaN(v)) m = v; // a NaN stays: nothing compares greater
      sumX += v;
    }
    let s = 0;
    for (let j = 0; j < cols; j++) s += Math.exp(src[base + j] - m);
    const lse = m + Math.log(s);
    // an out-of-range label has no logit to read: NaN marks the row (values are never checked on the host)
    const xt = t >= 0 && t < cols ? src[base + t] : Number.NaN;
    out[r] = lse - (1 - eps) * xt - off * sumX;
    if (!writeGrad) continue;
    for (let j = 0; j < cols; j++) {
      const target = j === t ? 1 - eps + off : off;
      src[base + j] = Math.exp(src[base + j] - lse) - target;
    }
    if (!(t >= 0 && t < cols)) src.fill(Number.NaN, base, base + cols);
  }
  return storageOf(out, 'float32');
};
