import type { KernelTable } from '../../backend.js';
import { OpError } from '../../errors.js';
import type { View } from '../../storage.js';
import { cpuArray, storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/**
 * Throws unless every label is in [0, cols) or `ignoreIndex` (a negative label is an error, not
 * a class from the end, as in PyTorch). Run before any row is computed, so x is left untouched
 * when `writeGrad` would have overwritten it. The Wasm kernel calls it too.
 */
export function checkLabels(labels: View, rows: number, cols: number, ignoreIndex: number): void {
  const lab = arrayOf(labels) as Int32Array;
  const stride = labels.strides[0] ?? 0;
  for (let r = 0; r < rows; r++) {
    const t = lab[labels.offset + r * stride];
    if (t !== ignoreIndex && !(t >= 0 && t < cols))
      throw new OpError('crossEntropyRows', labelMessage(t, cols));
  }
}

/** The message of an out-of-range label, the same on every backend (WebGPU's read-back uses it). */
export function labelMessage(label: number, cols: number): string {
  return `label ${label} is out of bounds for ${cols} classes (expected a class index in [0, ${cols}) or ignoreIndex)`;
}

/**
 * Cross-entropy per row (the reference loops): the max, Σ exp(x − max) and Σ x in float64 over
 * the row, then the loss, then (with `writeGrad`) the row overwritten by its gradient
 * softmax − target. Each element is read before it is written, so x may be its own output. A
 * label out of [0, cols) that is not `ignoreIndex` throws an OpError before anything is written.
 */
export const crossEntropyRows: KernelTable['crossEntropyRows'] = (x, labels, rows, cols, params) => {
  const { ignoreIndex, labelSmoothing: eps, writeGrad } = params;
  const src = arrayOf(x) as Float32Array;
  const lab = arrayOf(labels) as Int32Array;
  const labStride = labels.strides[0] ?? 0;
  checkLabels(labels, rows, cols, ignoreIndex);
  const out = cpuArray('float32', rows) as Float32Array;
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
    out[r] = lse - (1 - eps) * src[base + t] - off * sumX;
    if (!writeGrad) continue;
    for (let j = 0; j < cols; j++) {
      const target = j === t ? 1 - eps + off : off;
      src[base + j] = Math.exp(src[base + j] - lse) - target;
    }
  }
  return storageOf(out, 'float32');
};
