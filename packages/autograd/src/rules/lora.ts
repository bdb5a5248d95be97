import { gatherMatmul, indexAdd, matmul, reshape, type Tensor, transpose, zeros } from '@lowrank/tensor';
import type { RuleTable } from '../rule.js';

/**
 * Gradients of the LoRA matmul ops (packages/tensor/src/ops/lora.ts). For out = base + s·h·w:
 *   d base = g,   d h = s·g·wᵀ,   d w = s·hᵀ·g   (summed over tokens),
 * and with a per-sample index into a stack w [S, K, N]: d h[b] = s·g[b]·w[index[b]]ᵀ (the same
 * gathered matmul on the transposed stack) and d w[j] = Σ_{b: index[b] = j} s·h[b]ᵀ·g[b]
 * (per-sample products added into their slices). The products are skinny (r ≤ 64 on one side),
 * which the WebGPU skinny kernels take.
 */
function grads(
  grad: Tensor,
  h: Tensor,
  w: Tensor,
  index: Tensor | null,
  scale: number,
  needH: boolean,
  needW: boolean,
): [Tensor | null, Tensor | null] {
  const [k, n] = [h.shape[h.rank - 1], w.shape[w.rank - 1]];
  if (!index) {
    const g2 = reshape(grad, [-1, n]);
    const dh = needH ? reshape(matmul(g2, transpose(w, 0, 1)).mul(scale), h.shape) : null;
    const dw = needW ? matmul(transpose(reshape(h, [-1, k]), 0, 1), g2).mul(scale) : null;
    return [dh, dw];
  }
  const b = h.shape[0];
  const g3 = reshape(grad, [b, -1, n]);
  const dh = needH ? reshape(gatherMatmul(g3, transpose(w, 1, 2), index).mul(scale), h.shape) : null;
  let dw: Tensor | null = null;
  if (needW) {
    const per = matmul(transpose(reshape(h, [b, -1, k]), 1, 2), g3); // [B, K, N]
    dw = indexAdd(zeros(w.shape, { device: w.device }), 0, index, per).mul(scale);
  }
  return [dh, dw];
}

export const loraRules = {
  loraExpand: {
    saveInputs: [1, 2, 3],
    backward: ({ grad, inputs: [, h, w, index], attrs, needs }) => {
      const [dh, dw] = grads(grad, h!, w!, attrs.indexed ? index! : null, attrs.scale, needs[1], needs[2]);
      return [needs[0] ? grad : null, dh, dw, null];
    },
  },
  gatherMatmul: {
    saveInputs: [0, 1, 2],
    backward: ({ grad, inputs: [x, w, index], needs }) => [
      ...grads(grad, x!, w!, index!, 1, needs[0], needs[1]),
      null,
    ],
  },
} satisfies RuleTable;
