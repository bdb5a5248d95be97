import type { KernelTable } from '../../backend.js';
import { OpError } from '../../errors.js';
import { cpuArray, storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/**
 * The `loraMatmul` kernel on the CPU, as reference loops: out[i] = residual[i] + α·a[i]·w[slot]
 * with slot = index[i] (or i), each dot product summed in float64 and rounded once. LoRA's
 * operands are skinny (r ≤ 64 on one side), so these loops cost about what the blocked matmul
 * would; they are the specification the WebGPU kernel is tested against.
 */
export const loraMatmul: KernelTable['loraMatmul'] = (a, w, index, residual, alpha, batch, m, k, n) => {
  const out = cpuArray('float32', batch * m * n);
  const ad = arrayOf(a) as Float32Array;
  const wd = arrayOf(w) as Float32Array;
  const rd = residual ? (arrayOf(residual) as Float32Array) : null;
  const id = index ? (arrayOf(index) as Int32Array) : null;
  const slots = index ? w.shape[0] : batch;
  const [bsa, rsa, csa] = a.strides;
  const [bsw, rsw, csw] = w.strides;
  const [bsr, rsr, csr] = residual ? residual.strides : [0, 0, 0];
  const row = new Float64Array(n);
  for (let b = 0; b < batch; b++) {
    let s = b;
    if (id && index) {
      s = id[index.offset + b * index.strides[0]];
      // a negative index is an error, not a slot from the end (as gather and PyTorch)
      if (s < 0 || s >= slots)
        throw new OpError('loraMatmul', `index ${s} is out of bounds for a dimension of size ${slots}`);
    }
    const aB = a.offset + b * bsa;
    const wB = w.offset + s * bsw;
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let p = 0; p < k; p++) {
        const x = ad[aB + i * rsa + p * csa];
        const wRow = wB + p * rsw;
        for (let j = 0; j < n; j++) row[j] += x * wd[wRow + j * csw];
      }
      const o = (b * m + i) * n;
      const rB = residual ? residual.offset + b * bsr + i * rsr : 0;
      for (let j = 0; j < n; j++) out[o + j] = (rd ? rd[rB + j * csr] : 0) + alpha * row[j];
    }
  }
  return storageOf(out, 'float32');
};
