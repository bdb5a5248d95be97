import '@lowrank/autograd';
import { Conv1D, Linear } from '@lowrank/nn';
import {
  type AutogradHooks,
  cat,
  Generator,
  getAutogradHooks,
  randn,
  setAutogradHooks,
  type Tensor,
} from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { LoraFusedLinear, LoraLinear } from '../src/index.js';
import { devices, maxAbsDiff } from './helpers.js';

/**
 * The LoRA layers' fused expand (`loraExpand`): outputs and gradients equal to the unfused
 * composition base(x) + s·(x·Aᵀ)·Bᵀ written with plain ops, on every device, for Linear and a
 * fused-slice Conv1D (GPT-2's c_attn with q and v adapted); the layer records loraExpand and no
 * separate add of the LoRA path.
 */
const { available } = await devices();
const spec = (r: number) => ({ r, alpha: 2 * r, scaling: 2, dropout: 0, useRslora: false });

function recorded(fn: () => void): string[] {
  const inner = getAutogradHooks()!;
  const ops: string[] = [];
  setAutogradHooks({
    ...inner,
    recordOp: (op, inputs, out, attrs) => {
      ops.push(op);
      inner.recordOp(op, inputs, out, attrs);
    },
  });
  try {
    fn();
  } finally {
    setAutogradHooks(inner as AutogradHooks);
  }
  return ops;
}

for (const device of available) {
  describe(`LoRA layers with the fused expand on ${device}`, () => {
    it('Linear: y and the gradients of x, A and B equal the unfused composition', async () => {
      const g = new Generator(5);
      const base = await new Linear(37, 70, { generator: g }).to(device);
      const layer = new LoraLinear(base, false);
      layer.addAdapter('a', spec(5), false, g); // B random too, so ΔW ≠ 0
      layer.activeAdapters = ['a'];
      const x = (await randn([3, 11, 37], { generator: g }).to(device)).requiresGrad_();
      const [A, B] = layer.factorParams('a');
      const ops = recorded(() => void layer.forward(x).dispose());
      // beyond the base layer's ops: Aᵀ, Bᵀ (views), the shrink and one loraExpand — no add, no scale
      const extra = [...ops];
      for (const op of recorded(() => void base.forward(x).dispose())) extra.splice(extra.indexOf(op), 1);
      expect(extra.sort()).toEqual(['loraExpand', 'matmul', 'permute', 'permute']);
      const got = layer.forward(x);
      const want = base.forward(x).add(x.matmul(A.T).matmul(B.T).mul(2));
      expect(await maxAbsDiff(got, want)).toBeLessThan(1e-5);
      const gy = await randn(got.shape, { generator: g }).to(device);
      const gradsOf = async (y: Tensor) => {
        y.mul(gy).sum().backward();
        const out = [x, A, B].map((t) => t.grad!);
        for (const t of [x, A, B]) t.grad = null;
        return out;
      };
      const [d1, d2] = [await gradsOf(got), await gradsOf(want)];
      for (let i = 0; i < 3; i++)
        expect(await maxAbsDiff(d1[i], d2[i]), `grad ${'xAB'[i]}`).toBeLessThan(1e-4);
      expect(await maxAbsDiff(d1[2], d1[2].mul(0))).toBeGreaterThan(1e-3); // B's gradient is not trivially 0
    });

    it('fused c_attn slices (q, v adapted): y equals base + the per-slice composition', async () => {
      const g = new Generator(7);
      const base = await new Conv1D(3 * 20, 16, { generator: g }).to(device);
      const layer = new LoraFusedLinear(base, true, [true, false, true]);
      layer.addAdapter('a', spec(3), false, g);
      layer.activeAdapters = ['a'];
      const x = await randn([2, 5, 16], { generator: g }).to(device);
      const [A, B] = layer.factorParams('a'); // A [2·3, 16], B [2·20, 3]
      const y0 = base.forward(x);
      const q = x
        .matmul(A.narrow(0, 0, 3).T)
        .matmul(B.narrow(0, 0, 20).T)
        .mul(2);
      const v = x
        .matmul(A.narrow(0, 3, 3).T)
        .matmul(B.narrow(0, 20, 20).T)
        .mul(2);
      const want = y0.add(cat([q, q.mul(0), v], -1));
      expect(await maxAbsDiff(layer.forward(x), want)).toBeLessThan(1e-5);
    });
  });
}
