import { addmm, matmul, type OpAttrs, reshape, sum, type Tensor, transpose } from '@lowrank/tensor';
import type { BackwardContext } from '../rule.js';
import { type RuleTable, unbroadcast } from '../rule.js';

/**
 * matmul in all its shapes (packages/tensor/src/ops/matmul.ts): 1-D operands are promoted to
 * matrices (a: [K] → [1, K], b: [K] → [K, 1]) and batch dims broadcast, so
 *   dA = G @ Bᵀ summed over A's broadcast batch dims,   dB = Aᵀ @ G likewise.
 */
export const matmulRules = {
  matmul: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], needs }) => {
      const a2 = a!.rank === 1 ? reshape(a!, [1, a!.shape[0]]) : a!;
      const b2 = b!.rank === 1 ? reshape(b!, [b!.shape[0], 1]) : b!;
      const m = a2.shape[a2.rank - 2];
      const n = b2.shape[b2.rank - 1];
      const batch = grad.shape.slice(0, grad.rank - (a!.rank > 1 ? 1 : 0) - (b!.rank > 1 ? 1 : 0));
      const g2 = reshape(grad, [...batch, m, n]); // (…, M, N)
      let ga: Tensor | null = null;
      let gb: Tensor | null = null;
      if (needs[0]) ga = reshape(unbroadcast(matmul(g2, transpose(b2, -2, -1)), a2.shape), a!.shape);
      if (needs[1]) {
        if (b2.rank === 2 && batch.length > 0) {
          // [..., M, K] @ [K, N]: fold the batch into M instead of summing B products
          const k = a2.shape[a2.rank - 1];
          const aFlat = reshape(a2, [-1, k]); // (B·M, K)
          gb = reshape(matmul(transpose(aFlat, 0, 1), reshape(g2, [-1, n])), b!.shape);
        } else {
          gb = reshape(unbroadcast(matmul(transpose(a2, -2, -1), g2), b2.shape), b!.shape);
        }
      }
      return [ga, gb];
    },
  },
  /**
   * addmm (alpha·a@b + bias + residual, a [..., M, K], b [K, N]): dA = alpha·G·Bᵀ and
   * dB = alpha·Aᵀ·G (the scale fused into the matmul's store), dbias = G summed over the rows,
   * dresidual = G. Inputs are `[a, b, bias?, residual?]`.
   */
  addmm: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], attrs, needs }: BackwardContext<OpAttrs['addmm']>) => {
      const k = a!.shape[a!.rank - 1];
      const n = b!.shape[1];
      const g2 = reshape(grad, [-1, n]);
      const out: (Tensor | null)[] = [
        needs[0] ? addmm(grad, transpose(b!, 0, 1), { alpha: attrs.alpha }) : null,
        needs[1] ? addmm(transpose(reshape(a!, [-1, k]), 0, 1), g2, { alpha: attrs.alpha }) : null,
      ];
      if (attrs.bias) out.push(needs[2] ? sum(g2, [0]) : null);
      if (attrs.residual) out.push(needs[out.length] ? grad : null);
      return out;
    },
  },
} satisfies RuleTable;
