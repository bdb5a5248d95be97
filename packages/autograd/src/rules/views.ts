import { arange, indexAdd, permute, reshape, zeros } from '@lowrank/tensor';
import { type RuleTable, unbroadcast } from '../rule.js';

/**
 * Gradients of views (packages/tensor/src/ops/views.ts). squeeze/unsqueeze/flatten/view are
 * recorded as reshape, transpose as permute, narrow as slice, broadcastTo as expand.
 */
export const viewRules = {
  reshape: { backward: ({ grad, inputShapes: [shape] }) => [reshape(grad, shape)] },
  permute: {
    backward: ({ grad, attrs }) => {
      const inverse = new Array<number>(attrs.dims.length);
      attrs.dims.forEach((d, i) => {
        inverse[d] = i;
      });
      return [permute(grad, inverse)];
    },
  },
  expand: { backward: ({ grad, inputShapes: [shape] }) => [unbroadcast(grad, shape)] },
  // the slice's gradient lands at positions start, start+step, … of a zero tensor. A step-1
  // slice says where instead (placement), and autograd places the parts of a split with one cat
  // (pieces.ts); backward (zeros + indexAdd) serves strided slices.
  slice: {
    placement: (attrs) => (attrs.step === 1 ? { dim: attrs.dim, start: attrs.start, end: attrs.end } : null),
    backward: ({ grad, inputShapes: [shape], attrs }) => {
      const out = zeros(shape, { device: grad.device });
      if (grad.size === 0) return [out];
      const positions = arange(attrs.start, attrs.end, attrs.step, { dtype: 'int32', device: grad.device });
      return [indexAdd(out, attrs.dim, positions, grad)];
    },
  },
} satisfies RuleTable;
