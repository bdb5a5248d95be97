import { neg, rotateHalf } from '@lowrank/tensor';
import type { RuleTable } from '../rule.js';

/**
 * Gradient of rotateHalf (packages/tensor/src/ops/rotary.ts). y = σ·P(x), P swapping the halves
 * of the last dim and σ = −1 on the first half, +1 on the second; its transpose is P(σ·g) =
 * −σ·P(g) = −rotateHalf(g), a lazy chain that fuses into whatever reads x's gradient.
 */
export const rotaryRules = {
  rotateHalf: { backward: ({ grad, attrs }) => [neg(rotateHalf(grad, attrs.dim))] },
} satisfies RuleTable;
