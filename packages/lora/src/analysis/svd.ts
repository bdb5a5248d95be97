/**
 * A small dense matrix on the host in float64 (row-major), and an SVD by one-sided Jacobi.
 * Used only for analysis (the paper's §7), never inside a forward pass, so it runs on the CPU.
 */
export interface Matrix {
  /** Number of rows. */
  readonly rows: number;
  /** Number of columns. */
  readonly cols: number;
  /** Row-major values, length rows·cols. */
  readonly data: Float64Array;
}

/** The thin SVD A = U·diag(S)·Vᵀ. */
export interface SVDResult {
  /** Left singular vectors as columns: [rows, k], k = min(rows, cols). */
  U: Matrix;
  /** Singular values, descending, length k. */
  S: Float64Array;
  /** Right singular vectors as columns: [cols, k] (so A = U·diag(S)·Vᵀ). */
  V: Matrix;
}

/**
 * A matrix from nested arrays or from a flat array with its shape.
 *
 * @example
 * linalg.matrix([[1, 2], [3, 4]]).data; // Float64Array [1, 2, 3, 4]
 */
export function matrix(values: readonly (readonly number[])[]): Matrix;
/**
 * A matrix of `rows` × `cols` from a flat row-major array.
 *
 * @example
 * linalg.matrix([1, 2, 3, 4, 5, 6], 2, 3).cols; // 3
 */
export function matrix(values: ArrayLike<number>, rows: number, cols: number): Matrix;
export function matrix(
  values: ArrayLike<number> | readonly (readonly number[])[],
  rows?: number,
  cols?: number,
): Matrix {
  if (rows === undefined || cols === undefined) {
    const nested = values as readonly (readonly number[])[];
    const r = nested.length;
    const c = r === 0 ? 0 : nested[0].length;
    const data = new Float64Array(r * c);
    nested.forEach((row, i) => {
      if (row.length !== c)
        throw new Error(`matrix: ragged rows: row 0 has ${c} values, row ${i} has ${row.length}`);
      data.set(row, i * c);
    });
    return { rows: r, cols: c, data };
  }
  const flat = values as ArrayLike<number>;
  if (flat.length !== rows * cols) {
    throw new Error(`matrix: shape [${rows},${cols}] needs ${rows * cols} values, got ${flat.length}`);
  }
  return { rows, cols, data: Float64Array.from(flat) };
}

/**
 * Aᵀ.
 *
 * @example
 * linalg.transpose(linalg.matrix([[1, 2]])).rows; // 2
 */
export function transpose(a: Matrix): Matrix {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j];
  return { rows: a.cols, cols: a.rows, data: out };
}

/**
 * A·B (float64, on the host).
 *
 * @example
 * linalg.matmul(linalg.matrix([[1, 2]]), linalg.matrix([[3], [4]])).data; // Float64Array [11]
 */
export function matmul(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows) {
    throw new Error(`matmul: inner dimensions differ: [${a.rows},${a.cols}] @ [${b.rows},${b.cols}]`);
  }
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const v = a.data[i * a.cols + k];
      if (v === 0) continue;
      for (let j = 0; j < b.cols; j++) out[i * b.cols + j] += v * b.data[k * b.cols + j];
    }
  }
  return { rows: a.rows, cols: b.cols, data: out };
}

/**
 * The first `k` columns of `a`.
 *
 * @example
 * linalg.leadingColumns(linalg.matrix([[1, 2, 3]]), 2).data; // Float64Array [1, 2]
 */
export function leadingColumns(a: Matrix, k: number): Matrix {
  if (!Number.isInteger(k) || k < 1 || k > a.cols) {
    throw new Error(`leadingColumns: k must be an integer in [1, ${a.cols}], got ${k}`);
  }
  const out = new Float64Array(a.rows * k);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < k; j++) out[i * k + j] = a.data[i * a.cols + j];
  return { rows: a.rows, cols: k, data: out };
}

/**
 * ‖A‖_F: the square root of the sum of squares.
 *
 * @example
 * linalg.frobeniusNorm(linalg.matrix([[3, 4]])); // 5
 */
export function frobeniusNorm(a: Matrix): number {
  let s = 0;
  for (const v of a.data) s += v * v;
  return Math.sqrt(s);
}

/**
 * Thin SVD A = U·diag(S)·Vᵀ by one-sided Jacobi (Hestenes): rotate pairs of columns of a tall
 * working matrix until all are orthogonal; their norms are the singular values. A wide matrix is
 * handled through its transpose. Accurate to about 1e-12 relative for well-scaled inputs.
 * Columns of U for zero singular values are completed to an orthonormal set.
 *
 * @example
 * const { U, S, V } = svd(matrix([[3, 0], [4, 5]])); // S ≈ [6.708, 2.236]
 */
export function svd(a: Matrix, options: { tolerance?: number; maxSweeps?: number } = {}): SVDResult {
  if (a.rows === 0 || a.cols === 0) throw new Error(`svd: empty matrix [${a.rows},${a.cols}]`);
  for (const v of a.data) if (!Number.isFinite(v)) throw new Error('svd: matrix has NaN or infinite values');
  if (a.rows < a.cols) {
    const t = svd(transpose(a), options);
    return { U: t.V, S: t.S, V: t.U };
  }
  const m = a.rows;
  const n = a.cols;
  const tol = options.tolerance ?? 1e-15;
  const maxSweeps = options.maxSweeps ?? 60;
  // Work on columns: G is stored column-major (n columns of length m) for cache-friendly rotations.
  const g = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) g[j * m + i] = a.data[i * n + j];
  const v = new Float64Array(n * n); // column-major too
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          const x = g[p * m + i];
          const y = g[q * m + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (Math.abs(gamma) <= tol * Math.sqrt(alpha * beta) || gamma === 0) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotate(g, m, p, q, c, s);
        rotate(v, n, p, q, c, s);
      }
    }
    if (!rotated) break;
  }
  const norms = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let i = 0; i < m; i++) s += g[j * m + i] ** 2;
    return Math.sqrt(s);
  });
  const order = norms.map((_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const S = new Float64Array(n);
  const U = new Float64Array(m * n);
  const V = new Float64Array(n * n);
  const cutoff = (norms[order[0]] || 1) * 1e-13;
  const zeroCols: number[] = [];
  order.forEach((src, k) => {
    S[k] = norms[src];
    for (let i = 0; i < n; i++) V[i * n + k] = v[src * n + i];
    if (norms[src] <= cutoff) {
      zeroCols.push(k);
      return;
    }
    for (let i = 0; i < m; i++) U[i * n + k] = g[src * m + i] / norms[src];
  });
  completeOrthonormal(U, m, n, zeroCols);
  return { U: { rows: m, cols: n, data: U }, S, V: { rows: n, cols: n, data: V } };
}

function rotate(x: Float64Array, len: number, p: number, q: number, c: number, s: number): void {
  for (let i = 0; i < len; i++) {
    const xp = x[p * len + i];
    const xq = x[q * len + i];
    x[p * len + i] = c * xp - s * xq;
    x[q * len + i] = s * xp + c * xq;
  }
}

/** Fills the listed columns of a row-major [m, n] matrix with unit vectors orthogonal to the rest. */
function completeOrthonormal(u: Float64Array, m: number, n: number, cols: readonly number[]): void {
  let basis = 0;
  for (const k of cols) {
    for (; basis < m; basis++) {
      const cand = new Float64Array(m);
      cand[basis] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < n; j++) {
          if (j === k) continue; // not-yet-filled columns are zero and drop out
          let dot = 0;
          for (let i = 0; i < m; i++) dot += u[i * n + j] * cand[i];
          for (let i = 0; i < m; i++) cand[i] -= dot * u[i * n + j];
        }
      }
      let norm = 0;
      for (const x of cand) norm += x * x;
      norm = Math.sqrt(norm);
      if (norm > 1e-8) {
        for (let i = 0; i < m; i++) u[i * n + k] = cand[i] / norm;
        basis++;
        break;
      }
    }
  }
}
