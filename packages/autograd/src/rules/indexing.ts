import { cat, gather, indexAdd, indexSelect, reshape, scatterAdd, type Tensor, zeros } from '@lowrank/tensor';
import type { RuleTable } from '../rule.js';

/**
 * Gradients of indexing ops (packages/tensor/src/ops/indexing.ts): gather and indexSelect
 * scatter their gradient back with scatterAdd/indexAdd (repeated indices add up), and the
 * adds read their gradient with gather/indexSelect. Indices get no gradient.
 */

/** Pads `t` with zeros at the end of each dim up to `shape`. */
function padTo(t: Tensor, shape: readonly number[]): Tensor {
  let out = t;
  shape.forEach((size, d) => {
    if (out.shape[d] < size) {
      const fill = [...out.shape];
      fill[d] = size - out.shape[d];
      out = cat([out, zeros(fill, { device: t.device })], d);
    }
  });
  return out;
}

export const indexingRules = {
  gather: {
    saveInputs: [1],
    backward: ({ grad, inputs: [, index], inputShapes: [shape], attrs }) => [
      scatterAdd(zeros(shape, { device: grad.device }), attrs.dim, index!, grad),
      null,
    ],
  },
  indexSelect: {
    saveInputs: [1],
    backward: ({ grad, inputs: [, index], inputShapes: [shape], attrs }) => {
      const out = zeros(shape, { device: grad.device });
      if (shape.length === 0) return [grad.sum().add(out), null];
      return [indexAdd(out, attrs.dim, reshape(index!, [index!.size]), grad), null];
    },
  },
  // scatterAdd(target, dim, index, src): d target = g; d src = g gathered at index (zero
  // where src is larger than index)
  scatterAdd: {
    saveInputs: [1],
    backward: ({ grad, inputs: [, index], inputShapes: [, , srcShape], attrs, needs }) => [
      needs[0] ? grad : null,
      null,
      needs[2] ? padTo(gather(grad, attrs.dim, index!), srcShape) : null,
    ],
  },
  indexAdd: {
    saveInputs: [1],
    backward: ({ grad, inputs: [, index], attrs, needs }) => [
      needs[0] ? grad : null,
      null,
      needs[2] ? indexSelect(grad, attrs.dim, index!) : null,
    ],
  },
} satisfies RuleTable;
