import {
  cast,
  div,
  eq,
  exp,
  expand,
  logicalAnd,
  mul,
  prod,
  reshape,
  sub,
  sum,
  type Tensor,
  where,
} from '@lowrank/tensor';
import { keepdimShape, type RuleTable } from '../rule.js';

/** Gradients of reductions and of softmax/logSoftmax/logsumexp (packages/tensor/src/ops/reduce.ts). */

/** `t` (reduced over `dims`, with or without keepdim) broadcast back to `shape`. */
function spread(t: Tensor, shape: readonly number[], dims: readonly number[]): Tensor {
  return expand(reshape(t, keepdimShape(shape, dims)), shape);
}

const numel = (shape: readonly number[], dims: readonly number[]) => dims.reduce((n, d) => n * shape[d], 1);

/**
 * max/min over dims: the gradient goes to the elements equal to the result. Ties share it
 * equally (each of k tied elements gets g/k), like PyTorch's amax/amin; NOTE: torch.max(dim)
 * (values, indices) instead gives it all to the index it returns.
 */
const extremeRule = {
  saveInputs: [0],
  saveOutput: true,
  backward: ({ grad, inputs: [x], output, attrs }) => {
    const shape = x!.shape;
    const hit = eq(x!, spread(output!, shape, attrs.dims));
    const count = sum(cast(hit, 'float32'), attrs.dims, true);
    return [where(hit, div(spread(grad, shape, attrs.dims), expand(count, shape)), 0)];
  },
} satisfies RuleTable['max'];

export const reduceRules = {
  sum: { backward: ({ grad, inputShapes: [shape], attrs }) => [spread(grad, shape, attrs.dims)] },
  mean: {
    backward: ({ grad, inputShapes: [shape], attrs }) => [
      div(spread(grad, shape, attrs.dims), numel(shape, attrs.dims)),
    ],
  },
  // ∂/∂xᵢ Πx = Π_{j≠i} xⱼ, computed without dividing by zero: with no zero in the slice it is
  // out/xᵢ; with exactly one zero only that element gets the product of the others; else 0.
  prod: {
    saveInputs: [0],
    backward: ({ grad, inputs: [x], attrs }) => {
      const shape = x!.shape;
      const isZero = eq(x!, 0);
      const zeros = spread(sum(cast(isZero, 'float32'), attrs.dims, true), shape, attrs.dims);
      const nonZero = where(isZero, 1, x!);
      const others = spread(prod(nonZero, attrs.dims, true), shape, attrs.dims);
      const local = where(
        eq(zeros, 0),
        div(others, nonZero),
        where(logicalAnd(eq(zeros, 1), isZero), others, 0),
      );
      return [mul(spread(grad, shape, attrs.dims), local)];
    },
  },
  max: extremeRule,
  min: extremeRule,
  // d logsumexp(x) = softmax(x) = exp(x − out)
  logsumexp: {
    saveInputs: [0],
    saveOutput: true,
    backward: ({ grad, inputs: [x], output, attrs }) => {
      const shape = x!.shape;
      return [mul(spread(grad, shape, attrs.dims), exp(sub(x!, spread(output!, shape, attrs.dims))))];
    },
  },
  // dx = y · (g − Σ g·y)
  softmax: {
    saveOutput: true,
    backward: ({ grad, output: y, attrs }) => [mul(y!, sub(grad, sum(mul(grad, y!), attrs.dim, true)))],
  },
  // dx = g − softmax(x) · Σ g, with softmax(x) = exp(y)
  logSoftmax: {
    saveOutput: true,
    backward: ({ grad, output: y, attrs }) => [sub(grad, mul(exp(y!), sum(grad, attrs.dim, true)))],
  },
} satisfies RuleTable;
