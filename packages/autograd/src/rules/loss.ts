import { linearCrossEntropyBackward, mul, type Tensor, unsqueeze } from '@lowrank/tensor';
import type { RuleTable } from '../rule.js';

/**
 * The fused cross-entropy ops (packages/tensor/src/ops/loss.ts) compute their gradients in the
 * forward pass, as residuals already scaled for 'mean'; the backward pass only multiplies them
 * by the incoming gradient: a scalar for 'mean'/'sum', one value per row for 'none' (the
 * residual is then each row's own gradient, so row i scales by g[i]). linearCrossEntropy with
 * 'none' and a weight or bias to train recomputes its chunks here instead.
 */
function scaleBy(residual: Tensor | null, grad: Tensor, perRow: boolean): Tensor | null {
  if (!residual) return null;
  if (!perRow) return mul(residual, grad);
  const g = residual.rank === 1 ? grad : unsqueeze(grad, 1);
  return mul(residual, g);
}

/** An internal error, for a residual the forward should have computed. */
function missing(op: string, what: string): never {
  throw new Error(`internal: ${op} was recorded without its ${what} residual`);
}

export const lossRules = {
  rowCrossEntropy: {
    backward: ({ grad, attrs, needs }) => {
      if (!needs[0]) return [null, null];
      const perRow = attrs.reduction === 'none';
      return [scaleBy(attrs.grad ?? missing('rowCrossEntropy', 'gradient'), grad, perRow), null];
    },
  },
  linearCrossEntropy: {
    backward: ({ grad, attrs, needs }) => {
      if (attrs.recompute) {
        // reduction 'none' with a weight or bias to train: the chunks are recomputed, each row
        // scaled by its own upstream gradient inside the sums
        const g = linearCrossEntropyBackward(
          attrs.recompute,
          attrs.recomputeWeight ?? missing('linearCrossEntropy', 'weight'),
          attrs.recomputeLabels ?? missing('linearCrossEntropy', 'labels'),
          grad,
          {
            ...attrs,
            bias: attrs.recomputeBias,
            needs: { hidden: needs[0], weight: needs[1], bias: needs[3] ?? false },
          },
        );
        return needs.length > 3 ? [g.dHidden, g.dWeight, null, g.dBias] : [g.dHidden, g.dWeight, null];
      }
      const perRow = attrs.reduction === 'none';
      const dh = needs[0]
        ? scaleBy(attrs.dHidden ?? missing('linearCrossEntropy', 'dHidden'), grad, perRow)
        : null;
      const dw = needs[1]
        ? scaleBy(attrs.dWeight ?? missing('linearCrossEntropy', 'dWeight'), grad, false)
        : null;
      const out: (Tensor | null)[] = [dh, dw, null];
      if (needs.length > 3)
        out.push(
          needs[3] ? scaleBy(attrs.dBias ?? missing('linearCrossEntropy', 'dBias'), grad, false) : null,
        );
      return out;
    },
  },
} satisfies RuleTable;
