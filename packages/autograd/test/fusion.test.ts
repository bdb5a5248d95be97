import '@lowrank/autograd';
import { gradcheck } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';

/**
 * Gradients through fused chains: finite differences on the CPU (forward and backward both run
 * as fused kernels), and on WebGPU the dispatch count of tanh-GELU's forward and backward.
 */
describe('autograd through fused chains', () => {
  it('finite differences agree through a fused elementwise chain and a fused reduction', async () => {
    lr.manualSeed(3);
    const x = lr.randn([3, 5], { requiresGrad: true });
    const y = lr.randn([3, 5]);
    const f = (a: lr.Tensor) => a.mul(0.5).add(0.1).exp().sub(y).square().mean();
    const g = (a: lr.Tensor) =>
      a.gelu({ approximate: 'tanh' }).mul(a.sigmoid()).softmax(-1).sum(0).square().sum();
    for (const fn of [f, g]) {
      const { ok, worst } = await gradcheck(fn, [x]);
      expect(ok, `worst ${JSON.stringify(worst)}`).toBe(true);
    }
    lr.dispose(x, y);
  });

  it('fused and unfused gradients agree bit for bit on the CPU', async () => {
    lr.manualSeed(4);
    const x = lr.randn([4, 6], { requiresGrad: true });
    const run = async () => {
      const loss = lr.tidy(() => x.gelu({ approximate: 'tanh' }).mul(2).add(x.tanh()).logSoftmax(-1).mean());
      loss.backward();
      loss.dispose();
      const g = await x.grad!.data();
      x.grad!.dispose();
      x.grad = null;
      return g;
    };
    const fused = await run();
    lr.setFusion(false);
    const eager = await run();
    lr.setFusion(true);
    expect(Array.from(fused)).toEqual(Array.from(eager));
    x.dispose();
  });
});

const unavailable = await lr
  .init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => lr.setDefaultDevice('cpu'));

describe.skipIf(unavailable !== null)(
  `fusion dispatch counts on webgpu${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    it("tanh-GELU's forward and backward take at most 2 dispatches", async () => {
      const x = lr.randn([16, 40], { device: 'webgpu', requiresGrad: true });
      const seed = lr.randn([16, 40], { device: 'webgpu' });
      await x.data();
      await seed.data();
      const before = lr.webgpuStats()!.dispatches;
      const y = x.gelu({ approximate: 'tanh' });
      lr.realize(y.storage); // the forward's one kernel
      y.backward(seed);
      await x.grad!.data(); // the backward's one kernel
      const used = lr.webgpuStats()!.dispatches - before;
      expect(used).toBeLessThanOrEqual(2);
      lr.dispose(x, seed, y);
    });

    it('computeSaved computes the tensors autograd saves at once (one more kernel here), same gradient', async () => {
      const x = lr.randn([16, 40], { device: 'webgpu', requiresGrad: true });
      await x.data();
      const run = async (computeSaved: boolean) => {
        lr.setFusion(true, { computeSaved });
        await lr.getBackend('webgpu').flush?.();
        const before = lr.webgpuStats()!.dispatches;
        const loss = lr.tidy(() => x.mul(2).exp().sum()); // exp saves its output
        await loss.data();
        const forward = lr.webgpuStats()!.dispatches - before;
        loss.backward();
        const g = await x.grad!.data();
        lr.dispose(loss, x.grad!);
        x.grad = null;
        return { forward, g };
      };
      const lazy = await run(false);
      const eager = await run(true);
      lr.setFusion(true, { computeSaved: false });
      expect(lazy.forward).toBe(1); // the sum with mul and exp as its prologue
      expect(eager.forward).toBe(2); // exp's output is computed when saved, then summed
      for (let i = 0; i < lazy.g.length; i++) expect(Math.abs(lazy.g[i] - eager.g[i])).toBeLessThan(1e-5);
      x.dispose();
    });
  },
);
