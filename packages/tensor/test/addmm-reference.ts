/** Float64 loops: alpha·A·B + bias + residual for A [rows, k], B [k, n] given as flat row-major arrays. */
export function refAddmm(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  rows: number,
  k: number,
  n: number,
  bias: ArrayLike<number> | null,
  residual: ArrayLike<number> | null,
  alpha: number,
): Float64Array {
  const out = new Float64Array(rows * n);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      out[i * n + j] = alpha * s + (bias ? bias[j] : 0) + (residual ? residual[i * n + j] : 0);
    }
  }
  return out;
}

/** Largest |x − ref| / (1 + |ref|). */
export function relErr(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(x[i] - ref[i]) / (1 + Math.abs(ref[i])));
  return e;
}
