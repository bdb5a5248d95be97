import { readFileSync } from 'node:fs';
import { valueAndGrad } from '@lowrank/autograd';
import type { Tensor } from '@lowrank/tensor';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';

/**
 * Agreement with PyTorch on composite functions written from primitives. The reference
 * (inputs, loss, outputs, gradients) comes from reference/make_reference.py (torch 1.13, float64
 * on the same float32 inputs) and is committed; Python is never run here.
 */

interface Encoded {
  shape: number[];
  data: number[];
  dtype?: 'int32';
}
interface Case {
  inputs: Record<string, Encoded>;
  loss: number;
  outputs: Record<string, Encoded>;
  grads: Record<string, Encoded>;
}
const ref = JSON.parse(readFileSync(new URL('./reference/reference.json', import.meta.url), 'utf8')) as {
  cases: Record<string, Case>;
};

const load = (e: Encoded) => lr.tensor(e.data, { shape: e.shape, dtype: e.dtype ?? 'float32' });

/** max |a − b| / (atol + rtol |b|) ≤ 1, elementwise. */
async function expectClose(name: string, t: Tensor, e: Encoded, atol = 2e-5, rtol = 1e-4): Promise<void> {
  expect(t.shape, name).toEqual(e.shape);
  const got = await t.data();
  let worst = 0;
  let at = -1;
  e.data.forEach((want, i) => {
    const err = Math.abs(got[i] - want) / (atol + rtol * Math.abs(want));
    if (err > worst) {
      worst = err;
      at = i;
    }
  });
  expect(worst, `${name}[${at}]: got ${got[at]}, PyTorch ${e.data[at]}`).toBeLessThanOrEqual(1);
}

/** The composite functions, from primitives; each returns [loss, named outputs]. */
const MODELS: Record<string, (x: Record<string, Tensor>) => [Tensor, Record<string, Tensor>]> = {
  mlp_cross_entropy: ({ x, w1, b1, w2, b2, labels }) => {
    const h = x.matmul(w1).add(b1).gelu(); // (N, H), exact erf GELU
    const logits = h.matmul(w2).add(b2); // (N, C)
    const nll = logits.logSoftmax(-1).gather(1, labels.unsqueeze(1)).neg(); // (N, 1)
    return [nll.mean(), { logits }];
  },
  attention_block: ({ x, w_attn, w_proj, w_fc, r }) => {
    const [B, T, C] = x.shape;
    const nh = 2;
    const hs = C / nh;
    const heads = (t: Tensor) => t.reshape([B, T, nh, hs]).transpose(1, 2); // (B, nh, T, hs)
    const [q, k, v] = x.matmul(w_attn).split(C, 2).map(heads);
    let att = q.matmul(k.transpose(-2, -1)).mul(1 / Math.sqrt(hs)); // (B, nh, T, T)
    const causal = lr.ones([T, T]).tril().gt(0);
    att = att.where(causal, Number.NEGATIVE_INFINITY).softmax(-1);
    let y = att.matmul(v).transpose(1, 2).reshape([B, T, C]).matmul(w_proj); // (B, T, C)
    y = y.add(y.matmul(w_fc).gelu({ approximate: 'tanh' }));
    return [y.mul(r).sum(), { y }];
  },
  layer_norm: ({ x, gamma, beta, r }) => {
    const mu = x.mean(-1, true);
    const d = x.sub(mu);
    const variance = d.square().mean(-1, true);
    const y = d.mul(variance.add(1e-5).rsqrt()).mul(gamma).add(beta);
    return [y.mul(r).sum(), { y }];
  },
};

describe('agreement with PyTorch (reference/reference.json)', () => {
  for (const [name, c] of Object.entries(ref.cases)) {
    it(`${name}: loss, outputs and every gradient`, async () => {
      const before = lr.memory().numTensors;
      const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, e]) => [k, load(e)]));
      const names = Object.keys(c.grads);
      // the module-style API: leaves that require grad, loss.backward()
      const leaves = names.map((k) => inputs[k].requiresGrad_(true));
      const [loss, outputs] = lr.tidy(() => MODELS[name](inputs));
      expect(await loss.item()).toBeCloseTo(c.loss, 4);
      for (const [k, e] of Object.entries(c.outputs)) await expectClose(`${name}.${k}`, outputs[k], e);
      loss.backward();
      for (const [i, k] of names.entries()) await expectClose(`d${name}/d${k}`, leaves[i].grad!, c.grads[k]);
      // the functional API gives the same
      const detached = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, t.detach()]));
      const f = (...xs: Tensor[]) =>
        MODELS[name]({ ...detached, ...Object.fromEntries(names.map((k, i) => [k, xs[i]])) })[0];
      const { value, grads } = valueAndGrad(f)(...names.map((k) => detached[k]));
      expect(await value.item()).toBeCloseTo(c.loss, 4);
      for (const [i, k] of names.entries()) await expectClose(`grad(f) ${k}`, grads[i], c.grads[k]);
      lr.dispose(inputs, detached, loss, outputs, value, grads);
      expect(lr.memory().numTensors).toBe(before);
    });
  }
});
