import { add, mul, sigmoid, silu, sub } from '@lowrank/tensor';
import { type RuleTable, unbroadcast } from '../rule.js';

/**
 * Gradient of swiglu (packages/tensor/src/ops/swiglu.ts), y = silu(a)·b: db = g·silu(a) and
 * da = g·b·silu′(a) with silu′(a) = σ(a)·(1 + a·(1 − σ(a))). Each is one lazy chain of the saved
 * inputs, so each runs as one fused kernel inside whatever reads it.
 */
export const swigluRules = {
  swiglu: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], needs }) => {
      const s = sigmoid(a!);
      const da = needs[0]
        ? unbroadcast(mul(mul(grad, b!), mul(s, add(1, mul(a!, sub(1, s))))), a!.shape)
        : null;
      const db = needs[1] ? unbroadcast(mul(grad, silu(a!)), b!.shape) : null;
      return [da, db];
    },
  },
} satisfies RuleTable;
