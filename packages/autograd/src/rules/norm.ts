import { type NormAttrs, normBackward, OpError, type Tensor } from '@lowrank/tensor';
import type { BackwardContext, RuleTable } from '../rule.js';

/**
 * Gradients of the fused norms (packages/tensor/src/ops/norm.ts): one kernel for the input's
 * gradient and one column reduction for the weight's and bias's, from the rows' mean and 1/σ
 * that the forward kept (residual attrs). Inputs are `[x, weight?, bias?]`.
 */
function normRule(kind: 'layer' | 'rms') {
  return {
    saveInputs: [0, 1],
    backward: ({ grad, inputs, attrs, needs }: BackwardContext<NormAttrs>): (Tensor | null)[] => {
      const op = kind === 'layer' ? 'layerNorm' : 'rmsNorm';
      if (!attrs.rstd || (kind === 'layer' && !attrs.mean)) {
        throw new OpError('backward', `internal: '${op}' was recorded without its statistics`);
      }
      const weight = attrs.weight ? inputs[1] : null;
      const at = attrs.weight ? 2 : 1; // the bias's position
      const g = normBackward(
        kind,
        grad,
        inputs[0]!,
        attrs.normalizedShape,
        weight,
        attrs.mean ?? null,
        attrs.rstd,
        {
          input: needs[0],
          weight: attrs.weight && needs[1],
          bias: attrs.bias && needs[at],
        },
      );
      const out: (Tensor | null)[] = [g.input];
      if (attrs.weight) out.push(g.weight);
      if (attrs.bias) out.push(g.bias);
      return out;
    },
  };
}

export const normRules = {
  layerNorm: normRule('layer'),
  rmsNorm: normRule('rms'),
} satisfies RuleTable;
