import type { KernelTable } from '../../backend.js';
import { getKernel } from '../../engine/registry.js';
import { arrayOf } from './strided.js';

/**
 * The `matmulEpilogue` kernel on the CPU: the product by whichever `matmul` kernel device 'cpu' has
 * registered (the Wasm gemm when the Wasm backend is installed, which registers no epilogue kernel
 * of its own), then alpha·P + bias + residual in one float64 pass over the result, rounded once.
 */
export const matmulEpilogue: KernelTable['matmulEpilogue'] = (a, b, batch, m, k, n, epi) => {
  const out = getKernel('matmulEpilogue', 'cpu', 'matmul')(a, b, batch, m, k, n);
  const o = arrayOf({ storage: out, shape: [batch * m * n], strides: [1], offset: 0 }) as Float32Array;
  const { alpha, bias, residual } = epi;
  const bd = bias ? (arrayOf(bias) as Float32Array) : null;
  const rd = residual ? (arrayOf(residual) as Float32Array) : null;
  const [bsr, rsr, csr] = residual ? residual.strides : [0, 0, 0];
  let i = 0;
  for (let bi = 0; bi < batch; bi++) {
    for (let r = 0; r < m; r++) {
      const rowBase = residual ? residual.offset + bi * bsr + r * rsr : 0;
      for (let j = 0; j < n; j++, i++) {
        let v = alpha * o[i];
        if (bd && bias) v += bd[bias.offset + j * bias.strides[0]];
        if (rd) v += rd[rowBase + j * csr];
        o[i] = v;
      }
    }
  }
  return out;
};
