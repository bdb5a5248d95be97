import '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { countKernels } from '../../tensor/test/count-kernels.js';

/**
 * Kernels of the fused activations' forward and backward, counted on the CPU (and dispatches on
 * WebGPU): tanh-GELU is one kernel each way; swiglu's forward is one, its backward one per
 * input gradient (d gate, d up), and its node saves the two inputs only.
 */

const silu = (v: number) => v / (1 + Math.exp(-v));

describe('fused activations (cpu kernel counts)', () => {
  it("tanh-GELU: one kernel forward, one kernel for the input's gradient", () => {
    const x = lr.randn([8, 33], { requiresGrad: true });
    const seed = lr.randn([8, 33]);
    let y: lr.Tensor | null = null;
    expect(
      countKernels(() => {
        y = x.gelu({ approximate: 'tanh' });
        lr.realize(y.storage);
      }),
    ).toEqual({ elementwise: 1 });
    expect(
      countKernels(() => {
        y!.backward(seed);
        lr.realize(x.grad!.storage);
      }),
    ).toEqual({ elementwise: 1 });
    lr.dispose(x, seed, y!, x.grad!);
  });

  it('swiglu: one kernel forward, one per input gradient, two saved tensors; values against loops', async () => {
    const a = lr.randn([6, 20], { requiresGrad: true });
    const b = lr.randn([6, 20], { requiresGrad: true });
    const seed = lr.randn([6, 20]);
    let y: lr.Tensor | null = null;
    expect(
      countKernels(() => {
        y = lr.swiglu(a, b);
        lr.realize(y.storage);
      }),
    ).toEqual({ elementwise: 1 });
    expect((y!.gradFn as { numSaved: number }).numSaved).toBe(2);
    const composed = a.silu().mul(b);
    // composed: a mul node saving silu(a) and b, behind it a silu node saving a
    type SavedNode = { numSaved: number; edges: readonly ({ node: SavedNode } | null)[] };
    const mulNode = composed.gradFn as SavedNode;
    const siluNode = (mulNode.edges[0] as { node: SavedNode }).node;
    expect(mulNode.numSaved + siluNode.numSaved).toBe(3);
    expect(
      countKernels(() => {
        y!.backward(seed);
        lr.realize(a.grad!.storage);
        lr.realize(b.grad!.storage);
      }),
    ).toEqual({ elementwise: 2 });
    const [as, bs, gs, ys, da, db] = await Promise.all(
      [a, b, seed, y!, a.grad!, b.grad!].map((t) => t.data()),
    );
    for (let i = 0; i < as.length; i++) {
      const s = 1 / (1 + Math.exp(-as[i]));
      expect(ys[i]).toBeCloseTo(silu(as[i]) * bs[i], 5);
      expect(db[i]).toBeCloseTo(gs[i] * silu(as[i]), 5);
      expect(da[i]).toBeCloseTo(gs[i] * bs[i] * s * (1 + as[i] * (1 - s)), 5);
    }
    lr.dispose(a, b, seed, y!, composed, a.grad!, b.grad!);
  });
});

const unavailable = await lr
  .init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => lr.setDefaultDevice('cpu'));

describe.skipIf(unavailable !== null)(
  `swiglu dispatches on webgpu${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    it('one dispatch forward, two backward', async () => {
      const device = 'webgpu';
      const a = lr.randn([16, 40], { device, requiresGrad: true });
      const b = lr.randn([16, 40], { device, requiresGrad: true });
      const seed = lr.randn([16, 40], { device });
      await Promise.all([a, b, seed].map((t) => t.data()));
      const before = lr.webgpuStats()!.dispatches;
      const y = lr.swiglu(a, b);
      lr.realize(y.storage);
      const forward = lr.webgpuStats()!.dispatches - before;
      y.backward(seed);
      await a.grad!.data();
      await b.grad!.data();
      expect(forward).toBe(1);
      expect(lr.webgpuStats()!.dispatches - before).toBe(3);
      lr.dispose(a, b, seed, y, a.grad!, b.grad!);
    });
  },
);
