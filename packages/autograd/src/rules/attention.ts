import {
  type AttentionAttrs,
  OpError,
  scaledDotProductAttentionBackward,
  type Tensor,
} from '@lowrank/tensor';
import { type BackwardContext, type RuleTable, unbroadcast } from '../rule.js';

/**
 * Gradient of the fused attention (packages/tensor/src/ops/attention.ts): one backward kernel
 * recomputes the probabilities from the rows' logsumexp the forward kept (residual attr) and
 * returns dq, dk, dv (dk/dv already summed over the query heads of each kv head under GQA; with
 * dropout, the kernel regenerates the forward's mask from the key kept in the attrs);
 * inputs broadcast over batch dims get their gradient summed back. Inputs are `[q, k, v, mask?]`.
 * A float mask that requires grad is refused: its gradient is the [.., L, S] matrix of score
 * gradients, which the fused op exists not to store.
 */
export const attentionRules = {
  scaledDotProductAttention: {
    saveInputs: [0, 1, 2, 3],
    saveOutput: true,
    backward: ({ grad, inputs, output, attrs, needs, inputShapes }: BackwardContext<AttentionAttrs>) => {
      if (!attrs.lse || !output) {
        throw new OpError(
          'backward',
          "internal: 'scaledDotProductAttention' was recorded without its logsumexp",
        );
      }
      if (attrs.mask === 'float' && needs[3]) {
        throw new OpError(
          'scaledDotProductAttention',
          'the gradient of a float mask is not supported by the fused attention (it is an [.., L, S] matrix); detach the mask, or use F.attentionWithWeights',
        );
      }
      const [q, k, v, mask] = inputs;
      const g = scaledDotProductAttentionBackward(grad, q!, k!, v!, output, attrs.lse, {
        attnMask: attrs.mask ? mask : null,
        causal: attrs.causal,
        scale: attrs.scale,
        enableGqa: attrs.enableGqa,
        dropout: attrs.dropout ?? null,
      });
      const out: (Tensor | null)[] = [
        needs[0] ? unbroadcast(g.q, inputShapes[0]!) : null,
        needs[1] ? unbroadcast(g.k, inputShapes[1]!) : null,
        needs[2] ? unbroadcast(g.v, inputShapes[2]!) : null,
      ];
      if (attrs.mask) out.push(null);
      return out;
    },
  },
} satisfies RuleTable;
