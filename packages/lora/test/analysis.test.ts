import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  amplificationFactor,
  frobeniusNorm,
  type Matrix,
  matmul,
  matrix,
  subspaceSimilarity,
  subspaceSimilarityGrid,
  svd,
  transpose,
} from '../src/analysis/index.js';

/** Deterministic pseudo-random matrix (LCG), independent of the code under test. */
function randomMatrix(rows: number, cols: number, seed: number): Matrix {
  let s = seed >>> 0 || 1;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return { rows, cols, data };
}

function naiveReconstruct(U: Matrix, S: Float64Array, V: Matrix): Float64Array {
  const out = new Float64Array(U.rows * V.rows);
  for (let i = 0; i < U.rows; i++)
    for (let j = 0; j < V.rows; j++) {
      let acc = 0;
      for (let k = 0; k < S.length; k++) acc += U.data[i * U.cols + k] * S[k] * V.data[j * V.cols + k];
      out[i * V.rows + j] = acc;
    }
  return out;
}

function maxOrthoError(Q: Matrix): number {
  let err = 0;
  for (let a = 0; a < Q.cols; a++)
    for (let b = 0; b < Q.cols; b++) {
      let dot = 0;
      for (let i = 0; i < Q.rows; i++) dot += Q.data[i * Q.cols + a] * Q.data[i * Q.cols + b];
      err = Math.max(err, Math.abs(dot - (a === b ? 1 : 0)));
    }
  return err;
}

describe('svd (one-sided Jacobi)', () => {
  it('matches a hand-computed 2×2 example', () => {
    // [[3,0],[4,5]]: AᵀA = [[25,20],[20,25]] → σ² = 45, 5
    const { S } = svd(
      matrix([
        [3, 0],
        [4, 5],
      ]),
    );
    expect(S[0]).toBeCloseTo(Math.sqrt(45), 12);
    expect(S[1]).toBeCloseTo(Math.sqrt(5), 12);
  });

  it('reconstructs A = UΣVᵀ with orthonormal U and V, sorted singular values (tall, wide, square)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.nat(),
        (m, n, seed) => {
          const a = randomMatrix(m, n, seed);
          const { U, S, V } = svd(a);
          const k = Math.min(m, n);
          expect([U.rows, U.cols, V.rows, V.cols, S.length]).toEqual([m, k, n, k, k]);
          const rec = naiveReconstruct(U, S, V);
          for (let i = 0; i < rec.length; i++) expect(Math.abs(rec[i] - a.data[i])).toBeLessThan(1e-10);
          expect(maxOrthoError(U)).toBeLessThan(1e-10);
          expect(maxOrthoError(V)).toBeLessThan(1e-10);
          for (let i = 1; i < k; i++) expect(S[i]).toBeLessThanOrEqual(S[i - 1]);
          for (const s of S) expect(s).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('handles rank-deficient matrices (zero singular values, U still orthonormal)', () => {
    const u = randomMatrix(7, 1, 3);
    const v = randomMatrix(1, 5, 4);
    const a = matmul(u, v); // rank 1
    const { U, S, V } = svd(a);
    expect(S[0]).toBeCloseTo(frobeniusNorm(a), 10);
    for (let i = 1; i < S.length; i++) expect(S[i]).toBeLessThan(1e-10);
    expect(maxOrthoError(U)).toBeLessThan(1e-8);
    const rec = naiveReconstruct(U, S, V);
    for (let i = 0; i < rec.length; i++) expect(Math.abs(rec[i] - a.data[i])).toBeLessThan(1e-10);
    expect(
      svd(
        matrix([
          [0, 0],
          [0, 0],
        ]),
      ).S[0],
    ).toBe(0);
  });

  it('rejects NaN and empty input', () => {
    expect(() => svd(matrix([[Number.NaN]]))).toThrow(/NaN/);
    expect(() => svd({ rows: 0, cols: 3, data: new Float64Array(0) })).toThrow(/empty/);
  });
});

describe('subspace similarity φ', () => {
  it('φ(A, A, i, i) = 1 and φ ∈ [0, 1]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(),
        (r1, r2, seed) => {
          const a1 = randomMatrix(r1, 16, seed);
          const a2 = randomMatrix(r2, 16, seed + 1);
          for (let i = 1; i <= r1; i++) expect(subspaceSimilarity(a1, a1, i, i)).toBeCloseTo(1, 10);
          const grid = subspaceSimilarityGrid(a1, a2);
          for (const row of grid)
            for (const v of row) {
              expect(v).toBeGreaterThanOrEqual(-1e-12);
              expect(v).toBeLessThanOrEqual(1 + 1e-12);
            }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('is 0 for orthogonal row spaces and 1 when one space contains the other', () => {
    const e = (k: number) => Array.from({ length: 6 }, (_, i) => (i === k ? 1 : 0));
    const a1 = matrix([e(0), e(1)]);
    const a2 = matrix([e(2), e(3), e(4)]);
    expect(subspaceSimilarity(a1, a2, 2, 3)).toBeCloseTo(0, 12);
    const a3 = matrix([e(0).map((x, i) => x + (i === 1 ? 2 : 0)), e(1), e(5)]); // contains span(e0, e1)
    expect(subspaceSimilarity(a1, a3, 2, 3)).toBeCloseTo(1, 10);
    expect(() => subspaceSimilarity(a1, a2, 3, 1)).toThrow(/i must be in \[1, 2\]/);
    expect(() => subspaceSimilarity(a1, matrix([[1, 2]]), 1, 1)).toThrow(/same input size/);
  });
});

describe('amplification factor', () => {
  it('equals ‖ΔW‖/‖UᵀWV‖ computed by hand on a diagonal example', () => {
    const w = matrix([
      [10, 0, 0],
      [0, 1, 0],
      [0, 0, 0.1],
    ]);
    const dw = matrix([
      [0, 0, 0],
      [0, 0, 0],
      [0, 0, 2],
    ]); // rank 1 along e3
    const amp = amplificationFactor(w, dw);
    expect(amp.deltaNorm).toBeCloseTo(2, 12);
    expect(amp.projectedNorm).toBeCloseTo(0.1, 12);
    expect(amp.factor).toBeCloseTo(20, 10);
    expect(amp.topDirectionsNorm).toBeCloseTo(10, 12);
  });

  it('is ‖ΔW‖/‖W‖ when ΔW spans everything and W is square orthogonal-invariant', () => {
    const w = randomMatrix(5, 5, 9);
    const dw = randomMatrix(5, 5, 10);
    const amp = amplificationFactor(w, dw, 5);
    expect(amp.projectedNorm).toBeCloseTo(frobeniusNorm(w), 10);
    expect(amp.factor).toBeCloseTo(frobeniusNorm(dw) / frobeniusNorm(w), 10);
    expect(() => amplificationFactor(w, transpose(randomMatrix(5, 4, 1)))).toThrow(/differ in shape/);
  });
});
