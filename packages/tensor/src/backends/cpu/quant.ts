import type { KernelTable, QuantView } from '../../backend.js';
import { DOUBLE_QUANT_BLOCK, NF4_VALUES } from '../../quant/format.js';
import { storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/**
 * The quantized kernels on the CPU, as reference loops: each row of the weight is dequantized
 * into a float32 row buffer as it is read (the 16-entry NF4 table or the int8 code, times the
 * block's scale, double-quantized scales undone first), then used by a float64 multiply-add
 * loop rounded once per output. The full [rows, cols] matrix never exists.
 */

/** Dequantizes the block scales of `w` (float32, [rows · blocksPerRow]). */
function scalesOf(w: QuantView): Float32Array {
  if (!w.steps) return w.scales.handle as Float32Array;
  const words = w.scales.handle as Int32Array;
  const steps = w.steps.handle as Float32Array;
  const n = w.rows * Math.ceil(w.cols / w.blockSize);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const code = (words[i >> 2] << (24 - 8 * (i & 3))) >> 24;
    out[i] = Math.fround(code * steps[Math.floor(i / DOUBLE_QUANT_BLOCK)]) + w.scaleMean;
  }
  return out;
}

/** A function writing dequantized row r of `w` into `row` (length cols). */
function rowReader(w: QuantView): (r: number, row: Float32Array) => void {
  const words = w.codes.handle as Int32Array;
  const scales = scalesOf(w);
  const { cols, blockSize } = w;
  const bpr = Math.ceil(cols / blockSize);
  if (w.format === 'nf4') {
    const wpr = Math.ceil(cols / 8);
    return (r, row) => {
      for (let c = 0; c < cols; c++) {
        const code = (words[r * wpr + (c >> 3)] >>> (4 * (c & 7))) & 15;
        row[c] = NF4_VALUES[code] * scales[r * bpr + Math.floor(c / blockSize)];
      }
    };
  }
  const wpr = Math.ceil(cols / 4);
  return (r, row) => {
    for (let c = 0; c < cols; c++) {
      const code = (words[r * wpr + (c >> 2)] << (24 - 8 * (c & 3))) >> 24;
      row[c] = code * scales[r * bpr + Math.floor(c / blockSize)];
    }
  };
}

export const quantMatmul: KernelTable['quantMatmul'] = (a, w, m, transpose) => {
  const ad = arrayOf(a) as Float32Array;
  const [rs, cs] = a.strides;
  const { rows, cols } = w;
  const read = rowReader(w);
  const row = new Float32Array(cols);
  if (transpose) {
    // out[i, r] = Σ_c a[i, c]·W[r, c]
    const out = new Float32Array(m * rows);
    for (let r = 0; r < rows; r++) {
      read(r, row);
      for (let i = 0; i < m; i++) {
        const base = a.offset + i * rs;
        let acc = 0;
        for (let c = 0; c < cols; c++) acc += ad[base + c * cs] * row[c];
        out[i * rows + r] = acc;
      }
    }
    return storageOf(out, 'float32');
  }
  // out[i, c] = Σ_r a[i, r]·W[r, c]
  const acc = new Float64Array(m * cols);
  for (let r = 0; r < rows; r++) {
    read(r, row);
    for (let i = 0; i < m; i++) {
      const x = ad[a.offset + i * rs + r * cs];
      if (x === 0) continue;
      const o = i * cols;
      for (let c = 0; c < cols; c++) acc[o + c] += x * row[c];
    }
  }
  return storageOf(Float32Array.from(acc), 'float32');
};

export const dequantize: KernelTable['dequantize'] = (w) => {
  const out = new Float32Array(w.rows * w.cols);
  const read = rowReader(w);
  for (let r = 0; r < w.rows; r++) read(r, out.subarray(r * w.cols, (r + 1) * w.cols));
  return storageOf(out, 'float32');
};
