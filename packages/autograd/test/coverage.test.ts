import { GRAD_RULES, gradcheck, registerGradRule } from '@lowrank/autograd';
import type { OpName, Tensor } from '@lowrank/tensor';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { GRAD_CASES } from './grad-suite.js';

/** Every op of OpAttrs (the compiler checks this list is complete: a missing key fails tsc). */
const ALL_OPS: Record<OpName, true> = {
  neg: true,
  abs: true,
  exp: true,
  log: true,
  sqrt: true,
  rsqrt: true,
  tanh: true,
  sigmoid: true,
  relu: true,
  silu: true,
  sign: true,
  square: true,
  reciprocal: true,
  sin: true,
  cos: true,
  floor: true,
  ceil: true,
  round: true,
  logicalNot: true,
  gelu: true,
  clamp: true,
  cast: true,
  contiguous: true,
  add: true,
  sub: true,
  mul: true,
  div: true,
  pow: true,
  maximum: true,
  minimum: true,
  eq: true,
  ne: true,
  lt: true,
  le: true,
  gt: true,
  ge: true,
  logicalAnd: true,
  logicalOr: true,
  where: true,
  sum: true,
  mean: true,
  prod: true,
  max: true,
  min: true,
  argmax: true,
  argmin: true,
  logsumexp: true,
  softmax: true,
  logSoftmax: true,
  matmul: true,
  addmm: true,
  loraExpand: true,
  gatherMatmul: true,
  quantizedMatmul: true,
  reshape: true,
  permute: true,
  expand: true,
  slice: true,
  gather: true,
  indexSelect: true,
  scatterAdd: true,
  indexAdd: true,
  cat: true,
  layerNorm: true,
  rmsNorm: true,
  scaledDotProductAttention: true,
  swiglu: true,
  rotateHalf: true,
  rowCrossEntropy: true,
  linearCrossEntropy: true,
};

describe('rule coverage', () => {
  const names = Object.keys(ALL_OPS) as OpName[];
  const nonDiff = new Set<string>(lr.NON_DIFFERENTIABLE_OPS);

  it('every op has a gradient rule or is declared non-differentiable, not both', () => {
    const missing = names.filter((n) => !GRAD_RULES[n] && !nonDiff.has(n));
    const both = names.filter((n) => GRAD_RULES[n] && nonDiff.has(n));
    expect(missing).toEqual([]);
    expect(both).toEqual([]);
    expect(Object.keys(GRAD_RULES).filter((n) => !(n in ALL_OPS))).toEqual([]);
  });

  it('every rule is exercised by a finite-difference case', () => {
    const covered = new Set(GRAD_CASES.flatMap((c) => c.ops));
    expect(names.filter((n) => GRAD_RULES[n] && !covered.has(n))).toEqual([]);
  });
});

describe('gradcheck can fail', () => {
  // x³ recorded as one custom op, with a wrong and a right rule
  const cube = (op: string) => (x: Tensor) => lr.runOp(op, [x], {}, () => x.mul(x).mul(x));
  registerGradRule('test.cubeWrong', {
    saveInputs: [0],
    backward: ({ grad, inputs: [x] }) => [grad.mul(x!.square()).mul(2.9)],
  });
  registerGradRule('test.cubeRight', {
    saveInputs: [0],
    backward: ({ grad, inputs: [x] }) => [grad.mul(x!.square()).mul(3)],
  });

  it('flags a rule that is 3% off and passes the right one', async () => {
    const x = lr.tensor([0.5, -1.2, 2]);
    const wrong = await gradcheck(cube('test.cubeWrong'), [x]);
    expect(wrong.ok).toBe(false);
    expect(wrong.mismatches.length).toBe(3);
    const right = await gradcheck(cube('test.cubeRight'), [x]);
    expect(right.ok).toBe(true);
    expect(right.worst).toBeLessThan(0.5);
    x.dispose();
  });

  it('flags a missing broadcast reduction (wrong shape) as an error', async () => {
    registerGradRule('test.badShape', { backward: ({ grad }) => [grad.sum()] });
    const x = lr.tensor([1, 2]);
    await expect(
      gradcheck((t: Tensor) => lr.runOp('test.badShape', [t], {}, () => t.mul(1)), [x]),
    ).rejects.toThrow(/returned a gradient of shape \[\] for input 0 of shape \[2\]/);
    x.dispose();
  });
});

describe('residuals saved through Tensor-valued attrs', () => {
  // y = x·s with s = 2x computed in the forward and handed to the rule as a residual:
  // dy/dx = 2·s = 4x. The op disposes its own handle of s; the node's saved view keeps it.
  registerGradRule<{ s: Tensor }>('test.residual', {
    backward: ({ grad, attrs }) => [grad.mul(attrs.s).mul(2)],
  });
  const op = (x: Tensor) => {
    const attrs: { s: Tensor | null } = { s: null };
    const recorded = lr.willRecord([x]);
    const y = lr.runOp('test.residual', [x], attrs, () => {
      const s = x.mul(2);
      if (recorded) attrs.s = s;
      return x.mul(s);
    });
    attrs.s?.dispose();
    return y;
  };

  it('reads the residual in backward and frees it with the node', async () => {
    const x = lr.tensor([1, -2, 3], { requiresGrad: true });
    const before = lr.memory().numTensors;
    const y = op(x);
    expect(lr.memory().numTensors).toBe(before + 2); // y and the saved residual
    const total = y.sum();
    total.backward();
    expect(await x.grad!.toArray()).toEqual([4, -8, 12]);
    total.dispose();
    y.dispose();
    expect(lr.memory().numTensors).toBe(before + 1); // x.grad only
    expect(lr.willRecord([lr.tensor([1])])).toBe(false);
    x.dispose();
  });
});
