import { slice } from '@lowrank/tensor';
import type { RuleTable } from '../rule.js';

/** Gradient of cat (packages/tensor/src/ops/combine.ts; stack/split/chunk are built from cat and slice). */
export const combineRules = {
  // each input gets its own slice of the gradient along `dim`
  cat: {
    backward: ({ grad, inputShapes, attrs, needs }) => {
      let at = 0;
      return inputShapes.map((shape, i) => {
        const start = at;
        at += shape[attrs.dim];
        return needs[i] ? slice(grad, attrs.dim, start, at) : null;
      });
    },
  },
} satisfies RuleTable;
