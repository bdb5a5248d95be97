import type { KernelTable, QuantView } from '../../backend.js';
import { releaseStorage } from '../../engine/memory.js';
import { getKernel } from '../../engine/registry.js';
import { DOUBLE_QUANT_BLOCK, NF4_VALUES, quantizeData } from '../../quant/format.js';
import { f16Table } from '../../quant/half.js';
import type { View } from '../../storage.js';
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
 * A function writing columns [c0, c1) of dequantized row r of `w` into `dst` (length c1 − c0).
 * Block by block: nf4 scales the 16-entry table once per block (NF4[i]·scale, the same float32
 * products as value by value), then each code is one lookup; f16 goes through the 65536-entry
 * table (exact), bf16 is the upper half of a float32 (a bit copy).
 */
function rangeReader(w: QuantView): (r: number, c0: number, c1: number, dst: Float32Array) => void {
  const words = w.codes.handle as Int32Array;
  const { cols } = w;
  if (w.format === 'bf16') {
    const wpr = Math.ceil(cols / 2);
    return (r, c0, c1, dst) => {
      const bits = new Uint32Array(dst.buffer, dst.byteOffset, c1 - c0);
      const base = r * wpr;
      for (let c = c0; c < c1; c++) {
        const word = words[base + (c >> 1)];
        bits[c - c0] = c & 1 ? word & 0xffff0000 : word << 16;
      }
    };
  }
  if (w.format === 'f16') {
    const wpr = Math.ceil(cols / 2);
    const table = f16Table();
    return (r, c0, c1, dst) => {
      const base = r * wpr;
      for (let c = c0; c < c1; c++) dst[c - c0] = table[(words[base + (c >> 1)] >>> ((c & 1) << 4)) & 0xffff];
    };
  }
  const scales = scalesOf(w);
  const { blockSize } = w;
  const bpr = Math.ceil(cols / blockSize);
  if (w.format === 'nf4') {
    const wpr = Math.ceil(cols / 8);
    const table = new Float32Array(16);
    return (r, c0, c1, dst) => {
      const base = r * wpr;
      for (let b = Math.floor(c0 / blockSize); b * blockSize < c1; b++) {
        const scale = scales[r * bpr + b];
        for (let i = 0; i < 16; i++) table[i] = NF4_VALUES[i] * scale;
        const hi = Math.min(c1, (b + 1) * blockSize);
        for (let c = Math.max(c0, b * blockSize); c < hi; c++)
          dst[c - c0] = table[(words[base + (c >> 3)] >>> ((c & 7) << 2)) & 15];
      }
    };
  }
  const wpr = Math.ceil(cols / 4);
  return (r, c0, c1, dst) => {
    const base = r * wpr;
    for (let b = Math.floor(c0 / blockSize); b * blockSize < c1; b++) {
      const scale = scales[r * bpr + b];
      const hi = Math.min(c1, (b + 1) * blockSize);
      for (let c = Math.max(c0, b * blockSize); c < hi; c++)
        dst[c - c0] = ((words[base + (c >> 2)] << (24 - ((c & 3) << 3))) >> 24) * scale;
    }
  };
}

/** Row r of `w` whole (length cols). */
function rowReader(w: QuantView): (r: number, row: Float32Array) => void {
  const read = rangeReader(w);
  return (r, row) => read(r, 0, w.cols, row);
}

/** Weight rows (x·Wᵀ) or columns (x·W) decoded per panel. */
const PANEL = 64;

/**
 * Panels of the weight are decoded into a float32 scratch storage and multiplied by whichever
 * `matmul` kernel the CPU has registered (the Wasm SIMD gemm when installed), each product
 * written into its own columns of out: x·Wᵀ takes PANEL rows of W at a time (out's columns
 * [r0, r0 + P) = a · panelᵀ), x·W (the backward's d input) PANEL columns of every row (out's
 * columns [c0, c0 + P) = a · W[:, c0:c0+P]). No product is ever wider than PANEL columns: x·W
 * once took row panels and summed [m, cols] products, a transient as large as the output
 * (GPT-2 2 × 256 LoRA step on an NF4 base: 1 MiB more at the peak than the float32 base).
 */
export const quantMatmul: KernelTable['quantMatmul'] = (a, w, m, transpose) => {
  const { rows, cols } = w;
  const n = transpose ? rows : cols;
  const out = cpuArray('float32', m * n) as Float32Array;
  if (m === 0 || n === 0) return storageOf(out, 'float32');
  const matmul = getKernel('quantMatmul', 'cpu', 'matmul');
  const read = rangeReader(w);
  const [rs, cs] = a.strides;
  const k = transpose ? cols : rows;
  const a3: View = { storage: a.storage, shape: [1, m, k], strides: [0, rs, cs], offset: a.offset };
  for (let j0 = 0; j0 < n; j0 += PANEL) {
    const p = Math.min(PANEL, n - j0);
    const panel = allocate('float32', p * k);
    const pd = panel.handle as Float32Array;
    let b: View;
    if (transpose) {
      // rows j0…j0+p of W [p, cols], read as panelᵀ [cols, p]
      for (let i = 0; i < p; i++) read(j0 + i, 0, cols, pd.subarray(i * cols, (i + 1) * cols));
      b = { storage: panel, shape: [1, cols, p], strides: [0, 1, cols], offset: 0 };
    } else {
      // columns j0…j0+p of every row of W: panel [rows, p]
      for (let r = 0; r < rows; r++) read(r, j0, j0 + p, pd.subarray(r * p, (r + 1) * p));
      b = { storage: panel, shape: [1, rows, p], strides: [0, p, 1], offset: 0 };
    }
    const prod = matmul(a3, b, 1, m, k, p);
    const pr = prod.handle as Float32Array;
    for (let i = 0; i < m; i++) out.set(pr.subarray(i * p, (i + 1) * p), i * n + j0);
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
