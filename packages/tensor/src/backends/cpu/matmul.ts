import type { KernelTable } from '../../backend.js';
import { storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/** Copies a strided [rows, cols] matrix of a batch into a dense Float32Array (row-major). */
function packMatrix(
  src: Float32Array,
  offset: number,
  rowStride: number,
  colStride: number,
  rows: number,
  cols: number,
): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = offset + r * rowStride;
    for (let c = 0; c < cols; c++) out[r * cols + c] = src[base + c * colStride];
  }
  return out;
}

const BLOCK_K = 256;
const BLOCK_N = 512;

/**
 * C[M,N] += A[M,K]·B[K,N] on dense row-major arrays: loops ordered i-k-j so the innermost loop
 * streams rows of B and C, four rows of A at a time (each B element loaded feeds four FMAs),
 * and blocked over K and N so the B panel stays in cache.
 */
export function gemm(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  k: number,
  n: number,
): void {
  for (let j0 = 0; j0 < n; j0 += BLOCK_N) {
    const j1 = Math.min(j0 + BLOCK_N, n);
    for (let p0 = 0; p0 < k; p0 += BLOCK_K) {
      const p1 = Math.min(p0 + BLOCK_K, k);
      let i = 0;
      for (; i + 3 < m; i += 4) {
        const c0 = i * n;
        const c1 = c0 + n;
        const c2 = c1 + n;
        const c3 = c2 + n;
        for (let p = p0; p < p1; p++) {
          const a0 = a[i * k + p];
          const a1 = a[(i + 1) * k + p];
          const a2 = a[(i + 2) * k + p];
          const a3 = a[(i + 3) * k + p];
          const bp = p * n;
          for (let j = j0; j < j1; j++) {
            const bv = b[bp + j];
            c[c0 + j] += a0 * bv;
            c[c1 + j] += a1 * bv;
            c[c2 + j] += a2 * bv;
            c[c3 + j] += a3 * bv;
          }
        }
      }
      for (; i < m; i++) {
        const ci = i * n;
        for (let p = p0; p < p1; p++) {
          const av = a[i * k + p];
          const bp = p * n;
          for (let j = j0; j < j1; j++) c[ci + j] += av * b[bp + j];
        }
      }
    }
  }
}

export const matmul: KernelTable['matmul'] = (a, b, batch, m, k, n) => {
  const out = new Float32Array(batch * m * n);
  const sa = arrayOf(a) as Float32Array;
  const sb = arrayOf(b) as Float32Array;
  const [bsa, rsa, csa] = a.strides;
  const [bsb, rsb, csb] = b.strides;
  let packedB: Float32Array | null = null;
  for (let bi = 0; bi < batch; bi++) {
    const aDense =
      csa === 1 && rsa === k
        ? sa.subarray(a.offset + bi * bsa, a.offset + bi * bsa + m * k)
        : packMatrix(sa, a.offset + bi * bsa, rsa, csa, m, k);
    // a B shared by every batch entry (stride 0) is packed once
    let bDense: Float32Array;
    if (csb === 1 && rsb === n) bDense = sb.subarray(b.offset + bi * bsb, b.offset + bi * bsb + k * n);
    else if (bsb === 0 && packedB) bDense = packedB;
    else {
      bDense = packMatrix(sb, b.offset + bi * bsb, rsb, csb, k, n);
      if (bsb === 0) packedB = bDense;
    }
    gemm(aDense, bDense, out.subarray(bi * m * n, (bi + 1) * m * n), m, k, n);
  }
  return storageOf(out, 'float32');
};
