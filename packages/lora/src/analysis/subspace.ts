import type { Tensor } from '@lowrank/tensor';
import { frobeniusNorm, leadingColumns, type Matrix, matmul, matrix, svd, transpose } from './svd.js';

/**
 * The analyses of the LoRA paper's §7, on host matrices (float64).
 *
 * @example
 * // φ between the r=8 and r=64 adapters' A matrices, top-1 vs top-1 directions:
 * const phi = subspaceSimilarity(await toMatrix(a8), await toMatrix(a64), 1, 1);
 */

/**
 * Reads a 2-D tensor into a host float64 matrix.
 *
 * @example
 * const A = await toMatrix(lora.layers.get('transformer.h.0.attn.c_attn')!.plainFactors('default').A);
 */
export async function toMatrix(t: Tensor): Promise<Matrix> {
  if (t.rank !== 2) throw new Error(`toMatrix: expected a 2-D tensor, got shape [${t.shape.join(',')}]`);
  return matrix(await t.data(), t.shape[0], t.shape[1]);
}

/**
 * The top right-singular vectors of A ([r, in]) as columns [in, min(r, in)] (the paper's U_A).
 *
 * @example
 * rightSingularVectors(linalg.matrix([[0, 2, 0]])).data; // Float64Array [0, 1, 0] (up to sign)
 */
export function rightSingularVectors(a: Matrix): Matrix {
  return svd(a).V;
}

/**
 * Normalized subspace similarity of the paper's eq. (4):
 * φ(A₁, A₂, i, j) = ‖U_{A₁}^{i⊤} U_{A₂}^{j}‖²_F / min(i, j), where U_A^i are the top-i
 * right-singular vectors of A ([r, in]). It lies in [0, 1]: 1 when one subspace contains the
 * other, 0 when they are orthogonal. A₁ and A₂ may have different ranks but need the same `in`.
 *
 * @example
 * const a = linalg.matrix([[1, 0, 0], [0, 1, 0]]);
 * subspaceSimilarity(a, linalg.matrix([[1, 1, 0]]), 2, 1); // 1: span{(1,1,0)} lies in span{e1, e2}
 * subspaceSimilarity(a, linalg.matrix([[0, 0, 1]]), 2, 1); // 0: orthogonal
 */
export function subspaceSimilarity(a1: Matrix, a2: Matrix, i: number, j: number): number {
  if (a1.cols !== a2.cols) {
    throw new Error(
      `subspaceSimilarity: A1 and A2 need the same input size, got [${a1.rows},${a1.cols}] and [${a2.rows},${a2.cols}]`,
    );
  }
  return similarityFromBases(rightSingularVectors(a1), rightSingularVectors(a2), i, j);
}

function similarityFromBases(u1: Matrix, u2: Matrix, i: number, j: number): number {
  const maxI = Math.min(u1.cols, u1.rows);
  const maxJ = Math.min(u2.cols, u2.rows);
  if (!Number.isInteger(i) || i < 1 || i > maxI)
    throw new Error(`subspaceSimilarity: i must be in [1, ${maxI}], got ${i}`);
  if (!Number.isInteger(j) || j < 1 || j > maxJ)
    throw new Error(`subspaceSimilarity: j must be in [1, ${maxJ}], got ${j}`);
  const prod = matmul(transpose(leadingColumns(u1, i)), leadingColumns(u2, j));
  return frobeniusNorm(prod) ** 2 / Math.min(i, j);
}

/**
 * φ for every i ≤ maxI, j ≤ maxJ (the paper's Figure 3 grid), computing each SVD once.
 *
 * @example
 * const grid = subspaceSimilarityGrid(A8, A64, 8, 8); // grid[i-1][j-1] = φ(A8, A64, i, j), the paper's Figure 3
 */
export function subspaceSimilarityGrid(a1: Matrix, a2: Matrix, maxI = a1.rows, maxJ = a2.rows): number[][] {
  if (a1.cols !== a2.cols) {
    throw new Error(
      `subspaceSimilarityGrid: A1 and A2 need the same input size, got ${a1.cols} and ${a2.cols}`,
    );
  }
  const u1 = rightSingularVectors(a1);
  const u2 = rightSingularVectors(a2);
  return Array.from({ length: maxI }, (_, i) =>
    Array.from({ length: maxJ }, (_, j) => similarityFromBases(u1, u2, i + 1, j + 1)),
  );
}

/** What `amplificationFactor` computes (the paper's Table 7 quantities). */
export interface Amplification {
  /** ‖ΔW‖_F. */
  deltaNorm: number;
  /** ‖UᵀWV‖_F with U, V the top-r left/right singular vectors of ΔW (W projected on ΔW's subspace). */
  projectedNorm: number;
  /** ‖U_WᵀWV_W‖_F with W's own top-r directions (the largest any r-dim projection of W can be). */
  topDirectionsNorm: number;
  /** ‖ΔW‖_F / ‖UᵀWV‖_F: how much ΔW amplifies directions W does not emphasise. */
  factor: number;
}

/**
 * The paper's §7.3 amplification factor ‖ΔW‖_F / ‖UᵀWVᵀ‖_F. Both matrices are [out, in] (transpose
 * Conv1D weights first); `r` defaults to ΔW's numerical rank (at most its smaller dimension).
 *
 * @example
 * const amp = amplificationFactor(await toMatrix(W), await toMatrix(deltaW), 4);
 * amp.factor; // ≈ 21.5 for GPT-3's Wq at r = 4 in the paper
 */
export function amplificationFactor(w: Matrix, deltaW: Matrix, r?: number): Amplification {
  if (w.rows !== deltaW.rows || w.cols !== deltaW.cols) {
    throw new Error(
      `amplificationFactor: W [${w.rows},${w.cols}] and ΔW [${deltaW.rows},${deltaW.cols}] differ in shape`,
    );
  }
  const d = svd(deltaW);
  const rank = r ?? Math.max(1, Array.from(d.S).filter((s) => s > (d.S[0] || 1) * 1e-10).length);
  if (!Number.isInteger(rank) || rank < 1 || rank > d.S.length) {
    throw new Error(`amplificationFactor: r must be an integer in [1, ${d.S.length}], got ${rank}`);
  }
  const projected = matmul(matmul(transpose(leadingColumns(d.U, rank)), w), leadingColumns(d.V, rank));
  const sw = svd(w).S;
  let top = 0;
  for (let k = 0; k < rank && k < sw.length; k++) top += sw[k] ** 2;
  const deltaNorm = frobeniusNorm(deltaW);
  const projectedNorm = frobeniusNorm(projected);
  return { deltaNorm, projectedNorm, topDirectionsNorm: Math.sqrt(top), factor: deltaNorm / projectedNorm };
}
