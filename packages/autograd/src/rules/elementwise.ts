import {
  abs,
  add,
  cast,
  cos,
  div,
  eq,
  exp,
  ge,
  gelu,
  gt,
  le,
  log,
  logicalAnd,
  lt,
  mul,
  neg,
  pow,
  sigmoid,
  sign,
  sin,
  square,
  sub,
  type Tensor,
  tanh,
  where,
} from '@lowrank/tensor';
import { type GradRule, type RuleTable, unbroadcast } from '../rule.js';

/**
 * Gradients of elementwise ops (packages/tensor/src/ops/elementwise.ts). Binary ops broadcast,
 * so each operand's gradient is summed back to its own shape (`unbroadcast`).
 */

/** A one-input rule `dx = g · f'(x or y)`; `saveInputs`/`saveOutput` say which it reads. */
function unaryRule(
  uses: 'input' | 'output',
  dfdx: (x: Tensor, g: Tensor) => Tensor,
): GradRule<Record<string, never>> {
  return {
    saveInputs: uses === 'input' ? [0] : [],
    saveOutput: uses === 'output',
    backward: ({ grad, inputs, output }) => [dfdx(uses === 'input' ? inputs[0]! : output!, grad)],
  };
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** d/dx of gelu: exact `Φ(x) + x·φ(x)`, or the derivative of the tanh approximation. */
function geluGrad(x: Tensor, approximate: 'tanh' | 'none'): Tensor {
  if (approximate === 'tanh') {
    // u = k(x + 0.044715 x³), t = tanh(u): d = ½(1 + t) + ½ x (1 − t²) k (1 + 3·0.044715 x²)
    const x2 = square(x);
    const t = tanh(mul(add(x, mul(mul(x2, x), 0.044715)), SQRT_2_OVER_PI));
    const du = mul(add(mul(x2, 3 * 0.044715), 1), SQRT_2_OVER_PI);
    return add(mul(add(t, 1), 0.5), mul(mul(mul(x, 0.5), sub(1, square(t))), du));
  }
  // There is no erf op: Φ(x) = gelu(x)/x away from 0, and ½ + x·φ(0) next to it.
  const small = lt(abs(x), 1e-3);
  const safeX = where(small, 1, x);
  const cdf = where(small, add(mul(x, INV_SQRT_2PI), 0.5), div(gelu(safeX), safeX));
  const pdf = mul(exp(mul(square(x), -0.5)), INV_SQRT_2PI);
  return add(cdf, mul(x, pdf));
}

/** The mask of positions where `a` wins a maximum/minimum: 1, 0.5 on ties (as PyTorch), else 0. */
function winShare(a: Tensor, b: Tensor, wins: (a: Tensor, b: Tensor) => Tensor): Tensor {
  return add(cast(wins(a, b), 'float32'), mul(cast(eq(a, b), 'float32'), 0.5));
}

export const elementwiseRules = {
  neg: { backward: ({ grad }) => [neg(grad)] },
  // abs'(0) = 0, like PyTorch (sign(0) = 0)
  abs: unaryRule('input', (x, g) => mul(g, sign(x))),
  exp: unaryRule('output', (y, g) => mul(g, y)),
  log: unaryRule('input', (x, g) => div(g, x)),
  sqrt: unaryRule('output', (y, g) => div(g, mul(y, 2))),
  rsqrt: unaryRule('output', (y, g) => mul(g, mul(pow(y, 3), -0.5))),
  tanh: unaryRule('output', (y, g) => mul(g, sub(1, square(y)))),
  sigmoid: unaryRule('output', (y, g) => mul(g, mul(y, sub(1, y)))),
  // relu'(0) = 0, like PyTorch
  relu: unaryRule('input', (x, g) => where(gt(x, 0), g, 0)),
  silu: unaryRule('input', (x, g) => {
    const s = sigmoid(x);
    return mul(g, mul(s, add(mul(x, sub(1, s)), 1)));
  }),
  square: unaryRule('input', (x, g) => mul(g, mul(x, 2))),
  reciprocal: unaryRule('output', (y, g) => neg(mul(g, square(y)))),
  sin: unaryRule('input', (x, g) => mul(g, cos(x))),
  cos: unaryRule('input', (x, g) => neg(mul(g, sin(x)))),
  gelu: {
    saveInputs: [0],
    backward: ({ grad, inputs, attrs }) => [mul(grad, geluGrad(inputs[0]!, attrs.approximate))],
  },
  // Boundary convention (PyTorch's): the gradient passes where min ≤ x ≤ max, bounds included.
  clamp: {
    saveInputs: [0],
    backward: ({ grad, inputs, attrs }) => {
      const x = inputs[0]!;
      const lo = attrs.min === null ? null : ge(x, attrs.min);
      const hi = attrs.max === null ? null : le(x, attrs.max);
      const inside = lo && hi ? logicalAnd(lo, hi) : (lo ?? hi)!;
      return [where(inside, grad, 0)];
    },
  },
  // Only recorded for float32 → float32 (a no-op); casts to int32/bool are not differentiable.
  cast: { backward: ({ grad }) => [grad] },
  contiguous: { backward: ({ grad }) => [grad] },

  add: {
    backward: ({ grad, inputShapes, needs }) => [
      needs[0] ? unbroadcast(grad, inputShapes[0]) : null,
      needs[1] ? unbroadcast(grad, inputShapes[1]) : null,
    ],
  },
  sub: {
    backward: ({ grad, inputShapes, needs }) => [
      needs[0] ? unbroadcast(grad, inputShapes[0]) : null,
      needs[1] ? unbroadcast(neg(grad), inputShapes[1]) : null,
    ],
  },
  mul: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], inputShapes, needs }) => [
      needs[0] ? unbroadcast(mul(grad, b!), inputShapes[0]) : null,
      needs[1] ? unbroadcast(mul(grad, a!), inputShapes[1]) : null,
    ],
  },
  div: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], inputShapes, needs }) => [
      needs[0] ? unbroadcast(div(grad, b!), inputShapes[0]) : null,
      needs[1] ? unbroadcast(neg(div(mul(grad, a!), square(b!))), inputShapes[1]) : null,
    ],
  },
  // d/da aᵇ = b·aᵇ⁻¹ (0 where b = 0); d/db aᵇ = aᵇ·ln a (0 where a = 0 and b ≥ 0), as PyTorch.
  pow: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], inputShapes, needs }) => [
      needs[0]
        ? unbroadcast(where(eq(b!, 0), 0, mul(grad, mul(b!, pow(a!, sub(b!, 1))))), inputShapes[0])
        : null,
      needs[1]
        ? unbroadcast(
            where(logicalAnd(eq(a!, 0), ge(b!, 0)), 0, mul(grad, mul(pow(a!, b!), log(a!)))),
            inputShapes[1],
          )
        : null,
    ],
  },
  // Ties (a = b) give each operand half the gradient, as PyTorch does.
  maximum: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], inputShapes, needs }) => [
      needs[0] ? unbroadcast(mul(grad, winShare(a!, b!, gt)), inputShapes[0]) : null,
      needs[1] ? unbroadcast(mul(grad, winShare(b!, a!, gt)), inputShapes[1]) : null,
    ],
  },
  minimum: {
    saveInputs: [0, 1],
    backward: ({ grad, inputs: [a, b], inputShapes, needs }) => [
      needs[0] ? unbroadcast(mul(grad, winShare(a!, b!, lt)), inputShapes[0]) : null,
      needs[1] ? unbroadcast(mul(grad, winShare(b!, a!, lt)), inputShapes[1]) : null,
    ],
  },
  // where(cond, a, b): the condition gets no gradient.
  where: {
    saveInputs: [0],
    backward: ({ grad, inputs: [cond], inputShapes, needs }) => [
      null,
      needs[1] ? unbroadcast(where(cond!, grad, 0), inputShapes[1]) : null,
      needs[2] ? unbroadcast(where(cond!, 0, grad), inputShapes[2]) : null,
    ],
  },
} satisfies RuleTable;
