import type { KernelTable } from '../../backend.js';
import { cpuArray, storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/** A strided matrix: element (r, c) is `data[offset + r * rowStride + c * colStride]`. */
export interface StridedMatrix {
  data: Float32Array;
  offset: number;
  rowStride: number;
  colStride: number;
}

// Blocking (GotoBLAS-style, sized for a ~32 KiB L1 and a ≥256 KiB L2):
// C is computed in NC-wide column blocks; for each KC-deep slice of K, a KC×NC panel of B is packed
// into 4-column strips, then MC-row blocks of A are packed into 4-row strips, and a 4×4 micro-kernel
// multiplies one A strip by one B strip with its 16 accumulators held in local variables.
const MR = 4; // rows of C per micro-tile
const NR = 4; // columns of C per micro-tile
const KC = 256;
const NC = 256;
const MC = 64;

/**
 * Packs rows [i0, i0+rows) × cols [p0, p0+depth) of A into 4-row strips, k-major:
 * strip r holds, for each p, the 4 values A[i0+4r+0..3, p0+p] (zero past the last row).
 * Packed as float64, so the micro-kernel does no float32→float64 conversions.
 */
function packA(
  a: StridedMatrix,
  i0: number,
  rows: number,
  p0: number,
  depth: number,
  out: Float64Array,
): void {
  const { data, offset, rowStride, colStride } = a;
  let o = 0;
  for (let r = 0; r < rows; r += MR) {
    for (let q = 0; q < MR; q++) {
      if (r + q >= rows) {
        for (let p = 0; p < depth; p++) out[o + p * MR + q] = 0;
        continue;
      }
      const base = offset + (i0 + r + q) * rowStride + p0 * colStride;
      for (let p = 0; p < depth; p++) out[o + p * MR + q] = data[base + p * colStride];
    }
    o += depth * MR;
  }
}

/**
 * Packs rows [p0, p0+depth) × cols [j0, j0+cols) of B into 4-column strips, k-major:
 * strip s holds, for each p, the 4 values B[p0+p, j0+4s+0..3] (zero past the last column).
 */
function packB(
  b: StridedMatrix,
  p0: number,
  depth: number,
  j0: number,
  cols: number,
  out: Float64Array,
): void {
  const { data, offset, rowStride, colStride } = b;
  let o = 0;
  for (let s = 0; s < cols; s += NR) {
    for (let q = 0; q < NR; q++) {
      if (s + q >= cols) {
        for (let p = 0; p < depth; p++) out[o + p * NR + q] = 0;
        continue;
      }
      const base = offset + p0 * rowStride + (j0 + s + q) * colStride;
      for (let p = 0; p < depth; p++) out[o + p * NR + q] = data[base + p * rowStride];
    }
    o += depth * NR;
  }
}

/**
 * C[co..] += (A strip) · (B strip) for one 4×4 tile: `ap`/`bp` are the packed strips starting
 * at `ao`/`bo`, `depth` deep. `h`×`w` (≤ 4×4) of the tile lie inside C (row-major, `n` columns).
 * The 16 accumulators stay in locals (registers): each step loads 8 values for 16 multiply-adds.
 */
// biome-ignore format: the 4×4 accumulator grid reads best laid out as a grid
function microKernel(
  ap: Float64Array, ao: number, bp: Float64Array, bo: number, depth: number,
  c: Float32Array, co: number, n: number, h: number, w: number,
): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  const delta = bo - ao;
  const end = ao + depth * MR;
  for (let i = ao; i < end; i += 4) {
    const a0 = ap[i], a1 = ap[i + 1], a2 = ap[i + 2], a3 = ap[i + 3];
    const j = i + delta;
    const b0 = bp[j], b1 = bp[j + 1], b2 = bp[j + 2], b3 = bp[j + 3];
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
  }
  if (h === MR && w === NR) {
    c[co] += c00; c[co + 1] += c01; c[co + 2] += c02; c[co + 3] += c03;
    co += n;
    c[co] += c10; c[co + 1] += c11; c[co + 2] += c12; c[co + 3] += c13;
    co += n;
    c[co] += c20; c[co + 1] += c21; c[co + 2] += c22; c[co + 3] += c23;
    co += n;
    c[co] += c30; c[co + 1] += c31; c[co + 2] += c32; c[co + 3] += c33;
    return;
  }
  // an edge tile: write only the part inside C
  const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
  for (let x = 0; x < h; x++) for (let y = 0; y < w; y++) c[co + x * n + y] += tile[x * NR + y];
}

/**
 * C[M,N] += A[M,K]·B[K,N]; A and B are read through their strides (transposed operands cost
 * nothing extra: every panel is packed anyway), C is dense row-major at `c[cOffset..]`.
 * Products are accumulated in float64 within each KC-deep slice.
 */
export function gemm(
  a: StridedMatrix,
  b: StridedMatrix,
  c: Float32Array,
  cOffset: number,
  m: number,
  k: number,
  n: number,
): void {
  const bPacked = scratch(0, Math.min(KC, k) * roundUp(Math.min(NC, n), NR));
  const aPacked = scratch(1, roundUp(Math.min(MC, m), MR) * Math.min(KC, k));
  for (let j0 = 0; j0 < n; j0 += NC) {
    const nc = Math.min(NC, n - j0);
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = Math.min(KC, k - p0);
      packB(b, p0, kc, j0, nc, bPacked);
      for (let i0 = 0; i0 < m; i0 += MC) {
        const mc = Math.min(MC, m - i0);
        packA(a, i0, mc, p0, kc, aPacked);
        for (let s = 0; s < nc; s += NR) {
          const w = Math.min(NR, nc - s);
          for (let r = 0; r < mc; r += MR) {
            const h = Math.min(MR, mc - r);
            microKernel(aPacked, r * kc, bPacked, s * kc, kc, c, cOffset + (i0 + r) * n + j0 + s, n, h, w);
          }
        }
      }
    }
  }
}

// The packing buffers (at most KC·NC and MC·KC float64s) are reused across calls: kernels run
// synchronously on one thread, so no two calls use them at once.
const scratchBuffers = [new Float64Array(0), new Float64Array(0)];
function scratch(which: 0 | 1, size: number): Float64Array {
  if (scratchBuffers[which].length < size) scratchBuffers[which] = new Float64Array(size);
  return scratchBuffers[which];
}

function roundUp(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}

export const matmul: KernelTable['matmul'] = (a, b, batch, m, k, n) => {
  const out = cpuArray('float32', batch * m * n) as Float32Array;
  const sa = arrayOf(a) as Float32Array;
  const sb = arrayOf(b) as Float32Array;
  const [bsa, rsa, csa] = a.strides;
  const [bsb, rsb, csb] = b.strides;
  if (k === 0) return storageOf(out, 'float32');
  for (let bi = 0; bi < batch; bi++) {
    gemm(
      { data: sa, offset: a.offset + bi * bsa, rowStride: rsa, colStride: csa },
      { data: sb, offset: b.offset + bi * bsb, rowStride: rsb, colStride: csb },
      out,
      bi * m * n,
      m,
      k,
      n,
    );
  }
  return storageOf(out, 'float32');
};
