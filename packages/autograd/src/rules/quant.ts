import { type OpAttrs, quantizedMatmul, type Tensor } from '@lowrank/tensor';
import type { BackwardContext, RuleTable } from '../rule.js';

/**
 * quantizedMatmul (packages/tensor/src/quant/weight.ts): out = x·dequant(W)ᵀ (or x·dequant(W)).
 * The weight is a frozen base, so only the input gets a gradient, the same kernel with the
 * other orientation: d x = g·dequant(W) (or g·dequant(W)ᵀ), decoding W in its tile loads again
 * (no float32 copy of W is kept for backward). Codes, scales and steps get none.
 */
export const quantRules = {
  quantizedMatmul: {
    saveInputs: [1, 2, 3],
    backward: ({
      grad,
      inputs: [, codes, scales, steps],
      attrs,
      needs,
    }: BackwardContext<OpAttrs['quantizedMatmul']>) => {
      const out: (Tensor | null)[] = [null, null, null];
      if (attrs.doubleQuant) out.push(null);
      if (needs[0]) {
        const w = {
          format: attrs.format,
          shape: [attrs.rows, attrs.cols] as const,
          blockSize: attrs.blockSize,
          codes: codes!,
          scales: scales!,
          steps: attrs.doubleQuant ? steps! : null,
          scaleMean: attrs.scaleMean,
        };
        out[0] = quantizedMatmul(grad, w, { transpose: !attrs.transpose });
      }
      return out;
    },
  },
} satisfies RuleTable;
