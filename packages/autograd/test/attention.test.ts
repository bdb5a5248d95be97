import '@lowrank/autograd';
import { gradcheck } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { composedAttention, maxDiff } from '../../tensor/test/attention-reference.js';

/**
 * The fused attention's gradient rule on the CPU: finite differences (gradcheck) through the
 * backward kernel, and equality with the composed graph's gradients (GQA: dk/dv summed over each
 * kv head's query heads; broadcast inputs summed back; fully masked rows NaN as composed).
 */

type Opts = { causal?: boolean; mask?: lr.Tensor | null; enableGqa?: boolean; scale?: number };

async function grads(
  f: (q: lr.Tensor, k: lr.Tensor, v: lr.Tensor) => lr.Tensor,
  xs: lr.Tensor[],
  g: lr.Tensor,
) {
  const leaves = xs.map((x) => x.detach().requiresGrad_(true));
  const out = f(leaves[0], leaves[1], leaves[2]);
  out.backward(g);
  return Promise.all(leaves.map((x) => x.grad!.data()));
}

describe('fused attention gradient (cpu)', () => {
  it('passes gradcheck: causal, GQA, bool and float masks, L ≠ S', async () => {
    const cases: [number[], number[], Opts][] = [
      [[1, 2, 3, 4], [1, 2, 5, 4], { causal: true }],
      [[1, 4, 2, 3], [1, 2, 4, 3], { enableGqa: true }],
      [
        [2, 1, 3, 4],
        [2, 1, 3, 4],
        {
          mask: lr.tensor([
            [true, false, true],
            [true, true, false],
            [false, true, true],
          ]),
        },
      ],
      [[1, 2, 3, 4], [1, 2, 5, 4], { mask: lr.randn([1, 1, 3, 5]), causal: true, scale: 0.7 }],
    ];
    for (const [qs, ks, o] of cases) {
      lr.manualSeed(qs.length + ks[2]);
      const q = lr.randn(qs);
      const k = lr.randn(ks);
      const v = lr.randn(ks);
      const r = await gradcheck((a, b, c) => lr.scaledDotProductAttention(a, b, c, o), [q, k, v], {
        atol: 2e-3,
      });
      expect(r.worst, JSON.stringify(o)).toBeLessThanOrEqual(1);
    }
  });

  it('equals the composed graph’s gradients (GQA 1, 2, 4; masks; strided views)', async () => {
    for (const [g, causal, masked] of [
      [1, true, false],
      [2, false, true],
      [4, true, true],
    ] as const) {
      lr.manualSeed(g);
      const [b, hkv, l, s, e] = [2, 2, 7, 9, 5];
      const q = lr.randn([b, hkv * g, l, e]);
      const k = lr.randn([b, hkv, s, e]);
      const v = lr.randn([b, hkv, s, 3]).transpose(2, 3).contiguous().transpose(2, 3); // strided
      const mask = masked ? lr.rand([b, 1, l, s]).gt(0.2) : null;
      const gout = lr.randn([b, hkv * g, l, 3]);
      const fused = await grads(
        (x, y, z) => lr.scaledDotProductAttention(x, y, z, { causal, mask, enableGqa: g > 1 }),
        [q, k, v],
        gout,
      );
      const ref = await grads((x, y, z) => composedAttention(x, y, z, { causal, mask }), [q, k, v], gout);
      for (let i = 0; i < 3; i++) expect(maxDiff(fused[i], ref[i]), `input ${i} g=${g}`).toBeLessThan(2e-5);
    }
  });

  it('sums the gradient of broadcast batch dims back', async () => {
    const q = lr.randn([3, 4, 6]);
    const k = lr.randn([1, 5, 6]);
    const v = lr.randn([1, 5, 6]);
    const r = await gradcheck((a, b, c) => lr.scaledDotProductAttention(a, b, c), [q, k, v], { atol: 2e-3 });
    expect(r.worst).toBeLessThanOrEqual(1);
  });

  it('fully masked rows give NaN gradients where the composed graph does', async () => {
    const q = lr.randn([1, 1, 2, 3]);
    const k = lr.randn([1, 1, 2, 3]);
    const mask = lr.tensor([
      [true, true],
      [false, false],
    ]);
    const g = lr.ones([1, 1, 2, 3]);
    const fused = await grads((x, y, z) => lr.scaledDotProductAttention(x, y, z, { mask }), [q, k, k], g);
    const ref = await grads((x, y, z) => composedAttention(x, y, z, { mask }), [q, k, k], g);
    for (let i = 0; i < 3; i++) {
      expect(Array.from(fused[i]).map(Number.isNaN)).toEqual(Array.from(ref[i]).map(Number.isNaN));
      expect(maxDiff(fused[i], ref[i])).toBeLessThan(1e-5);
    }
  });

  it('refuses the gradient of a float mask that requires grad, saying why', () => {
    const q = lr.randn([1, 1, 2, 3], { requiresGrad: true });
    const mask = lr.zeros([2, 2], { requiresGrad: true });
    const out = lr.scaledDotProductAttention(q, q, q, { mask });
    expect(() => out.sum().backward()).toThrow(/gradient of a float mask/);
  });

  it('keeps the logsumexp only when recorded, and frees it with the graph', () => {
    const q = lr.randn([1, 2, 4, 3], { requiresGrad: true });
    const before = lr.memory().numTensors;
    lr.tidy(() => lr.scaledDotProductAttention(q, q, q, { causal: true }).sum().backward());
    q.grad?.dispose();
    q.grad = null;
    expect(lr.memory().numTensors).toBe(before);
  });
});
