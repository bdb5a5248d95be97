import type { KernelTable, QuantView } from '../../backend.js';
import { releaseStorage } from '../../engine/memory.js';
import { getKernel } from '../../engine/registry.js';
import { DOUBLE_QUANT_BLOCK, NF4_VALUES, quantizeData } from '../../quant/format.js';
import { f16Table } from '../../quant/half.js';
import type { Storage, View } from '../../storage.js';
import { allocate, cpuArray, storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/**
 * The quantized kernels on the CPU: rows of the weight are decoded as they are needed (the
 * 16-entry NF4 table or the int8 code, times the block's scale, double-quantized scales undone
 * first) into a float32 panel of at most 64 rows, which the registered CPU matmul multiplies.
 * The full [rows, cols] float32 matrix never exists.
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

/**
 * A function writing dequantized row r of `w` into `row` (length cols). Block by block: nf4
 * scales the 16-entry table once per block (NF4[i]·scale, the same float32 products as value by
 * value), then each code is one lookup.
 */
function rowReader(w: QuantView): (r: number, row: Float32Array) => void {
  const words = w.codes.handle as Int32Array;
  if (w.format === 'f16' || w.format === 'bf16') return halfRowReader(words, w.cols, w.format);
  const scales = scalesOf(w);
  const { cols, blockSize } = w;
  const bpr = Math.ceil(cols / blockSize);
  if (w.format === 'nf4') {
    const wpr = Math.ceil(cols / 8);
    const table = new Float32Array(16);
    return (r, row) => {
      const base = r * wpr;
      for (let b = 0; b < bpr; b++) {
        const scale = scales[r * bpr + b];
        for (let i = 0; i < 16; i++) table[i] = NF4_VALUES[i] * scale;
        const hi = Math.min(cols, (b + 1) * blockSize);
        for (let c = b * blockSize; c < hi; c++)
          row[c] = table[(words[base + (c >> 3)] >>> ((c & 7) << 2)) & 15];
      }
    };
  }
  const wpr = Math.ceil(cols / 4);
  return (r, row) => {
    const base = r * wpr;
    for (let b = 0; b < bpr; b++) {
      const scale = scales[r * bpr + b];
      const hi = Math.min(cols, (b + 1) * blockSize);
      for (let c = b * blockSize; c < hi; c++)
        row[c] = ((words[base + (c >> 2)] << (24 - ((c & 3) << 3))) >> 24) * scale;
    }
  };
}

/**
 * Row r of a 16-bit weight: two values a word, low half first; f16 through the 65536-entry
 * table (exact), bf16 as the upper half of a float32 (a bit copy).
 */
function halfRowReader(
  words: Int32Array,
  cols: number,
  format: 'f16' | 'bf16',
): (r: number, row: Float32Array) => void {
  const wpr = Math.ceil(cols / 2);
  const pairs = cols >> 1;
  if (format === 'bf16') {
    return (r, row) => {
      const bits = new Uint32Array(row.buffer, row.byteOffset, cols);
      const base = r * wpr;
      for (let i = 0; i < pairs; i++) {
        const word = words[base + i];
        bits[2 * i] = word << 16;
        bits[2 * i + 1] = word & 0xffff0000;
      }
      if (cols & 1) bits[cols - 1] = words[base + pairs] << 16;
    };
  }
  const table = f16Table();
  return (r, row) => {
    const base = r * wpr;
    for (let i = 0; i < pairs; i++) {
      const word = words[base + i];
      row[2 * i] = table[word & 0xffff];
      row[2 * i + 1] = table[word >>> 16];
    }
    if (cols & 1) row[cols - 1] = table[words[base + pairs] & 0xffff];
  };
}

/** Weight rows decoded per panel: the float32 scratch is PANEL × cols (or rows) at most. */
const PANEL = 64;

/**
 * Panels of PANEL weight rows are decoded into a float32 scratch storage and multiplied by
 * whichever `matmul` kernel the CPU has registered (the Wasm SIMD gemm when installed): out's
 * columns [r0, r0 + P) = a · panelᵀ (x·Wᵀ), or out += a[:, r0:r0+P] · panel (x·W).
 */
export const quantMatmul: KernelTable['quantMatmul'] = (a, w, m, transpose) => {
  const { rows, cols } = w;
  const n = transpose ? rows : cols;
  const out = cpuArray('float32', m * n) as Float32Array;
  if (m === 0 || n === 0) return storageOf(out, 'float32');
  const matmul = getKernel('quantMatmul', 'cpu', 'matmul');
  const read = rowReader(w);
  const [rs, cs] = a.strides;
  const a3: View = {
    storage: a.storage,
    shape: [1, m, transpose ? cols : rows],
    strides: [0, rs, cs],
    offset: a.offset,
  };
  for (let r0 = 0; r0 < rows; r0 += PANEL) {
    const p = Math.min(PANEL, rows - r0);
    const panel = allocate('float32', p * cols);
    const pd = panel.handle as Float32Array;
    for (let i = 0; i < p; i++) read(r0 + i, pd.subarray(i * cols, (i + 1) * cols));
    let prod: Storage;
    if (transpose) {
      // a [m, cols] · panelᵀ [cols, p]
      prod = matmul(
        a3,
        { storage: panel, shape: [1, cols, p], strides: [0, 1, cols], offset: 0 },
        1,
        m,
        cols,
        p,
      );
      const pr = prod.handle as Float32Array;
      for (let i = 0; i < m; i++) out.set(pr.subarray(i * p, (i + 1) * p), i * n + r0);
    } else {
      // a[:, r0:r0+p] [m, p] · panel [p, cols]
      const aSlice: View = { ...a3, shape: [1, m, p], offset: a.offset + r0 * cs };
      prod = matmul(
        aSlice,
        { storage: panel, shape: [1, p, cols], strides: [0, cols, 1], offset: 0 },
        1,
        m,
        p,
        cols,
      );
      const pr = prod.handle as Float32Array;
      for (let i = 0; i < m * cols; i++) out[i] += pr[i];
    }
    releaseStorage(prod);
    releaseStorage(panel);
  }
  return storageOf(out, 'float32');
};

export const quantize: KernelTable['quantize'] = (w, format, rows, cols, blockSize, scaleMean) => {
  const data = (arrayOf(w) as Float32Array).subarray(w.offset, w.offset + rows * cols);
  const q = quantizeData(data, rows, cols, {
    bits: format,
    blockSize,
    doubleQuant: scaleMean !== null,
    scaleMean: scaleMean ?? undefined,
  });
  return {
    codes: storageOf(q.codes, 'int32'),
    scales: storageOf(q.scales, q.steps ? 'int32' : 'float32'),
    steps: q.steps ? storageOf(q.steps, 'float32') : null,
  };
};

export const dequantize: KernelTable['dequantize'] = (w) => {
  const out = new Float32Array(w.rows * w.cols);
  const read = rowReader(w);
  for (let r = 0; r < w.rows; r++) read(r, out.subarray(r * w.cols, (r + 1) * w.cols));
  return storageOf(out, 'float32');
};
