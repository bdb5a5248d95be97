import * as lr from '../src/index.js';

/**
 * Independent references for the fused norms: plain float64 loops over row-major values, and the
 * composition of public ops the fused kernels replaced (mean, sub, square, rsqrt, mul).
 */

/** Row-wise layer/RMS norm of `x` ([rows, cols], row-major) in float64. */
export function refNorm(
  kind: 'layer' | 'rms',
  x: ArrayLike<number>,
  rows: number,
  cols: number,
  w: ArrayLike<number> | null,
  b: ArrayLike<number> | null,
  eps: number,
): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    if (kind === 'layer') {
      for (let j = 0; j < cols; j++) mean += x[r * cols + j];
      mean /= cols;
    }
    let ss = 0;
    for (let j = 0; j < cols; j++) ss += (x[r * cols + j] - mean) ** 2;
    const s = Math.sqrt(ss / cols + eps);
    for (let j = 0; j < cols; j++)
      out[r * cols + j] = ((x[r * cols + j] - mean) / s) * (w ? w[j] : 1) + (b ? b[j] : 0);
  }
  return out;
}

/** The composition of public ops over the trailing `shape` dims (what F.layerNorm used to be). */
export function composedNorm(
  kind: 'layer' | 'rms',
  x: lr.Tensor,
  shape: readonly number[],
  w: lr.Tensor | null,
  b: lr.Tensor | null,
  eps: number,
): lr.Tensor {
  return lr.tidy(() => {
    const dims = shape.map((_, i) => x.rank - shape.length + i);
    const d = kind === 'layer' ? x.sub(x.mean(dims, true)) : x;
    let y = d.mul(d.square().mean(dims, true).add(eps).rsqrt());
    if (w) y = y.mul(w);
    if (b) y = y.add(b);
    return y;
  });
}

/** Largest |a − b| / (atol + rtol·|b|) over the elements (≤ 1 passes). */
export function worst(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i]));
    if (!(e <= m)) m = Number.isNaN(e) ? Number.POSITIVE_INFINITY : e;
  }
  return m;
}
