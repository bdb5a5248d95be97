import fc from 'fast-check';
import * as lr from '../src/index.js';

/**
 * Shared by the CPU and WebGPU quantization tests: random weights, the float64 reference of
 * `x · dequant(W)ᵀ` / `x · dequant(W)` over a dequantized matrix, and a fast-check case of
 * shapes that are not multiples of the block size.
 */

export function values(n: number, seed: number, scale = 1): Float32Array {
  const g = new lr.Generator(seed);
  return Float32Array.from({ length: n }, () => (g.nextFloat() * 2 - 1) * scale);
}

/** out = x·Wᵀ (x [m, cols]) or x·W (x [m, rows]) in float64 over W = deq [rows, cols]. */
export function refMatmul(
  deq: Float32Array,
  rows: number,
  cols: number,
  x: Float32Array,
  m: number,
  transpose: boolean,
): Float64Array {
  const [k, n] = transpose ? [cols, rows] : [rows, cols];
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += x[i * k + p] * (transpose ? deq[j * cols + p] : deq[p * cols + j]);
      out[i * n + j] = acc;
    }
  return out;
}

/** Largest |a − b| / (1 + |b|). */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < b.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  return e;
}

export interface QuantCase {
  rows: number;
  cols: number;
  m: number;
  bits: lr.QuantFormat;
  blockSize: number | 'channel';
  doubleQuant: boolean;
  transpose: boolean;
  seed: number;
}

export function quantCase(maxDim: number): fc.Arbitrary<QuantCase> {
  return fc.record({
    rows: fc.integer({ min: 1, max: maxDim }),
    cols: fc.integer({ min: 1, max: maxDim }),
    m: fc.integer({ min: 1, max: 6 }),
    bits: fc.constantFrom<lr.QuantFormat>('nf4', 'int8'),
    blockSize: fc.constantFrom<number | 'channel'>(64, 16, 7, 'channel'),
    doubleQuant: fc.boolean(),
    transpose: fc.boolean(),
    seed: fc.nat(10000),
  });
}
