import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { initWebGPU } from './helpers.js';

/** What lazy fusion buys on WebGPU, counted: dispatches and buffers (independent of the GPU). */
const skip = await initWebGPU();

async function dispatches(fn: () => Promise<unknown>): Promise<number> {
  await lr.getBackend('webgpu').flush?.();
  const before = lr.webgpuStats()!.dispatches;
  await fn();
  return lr.webgpuStats()!.dispatches - before;
}

describe.skipIf(skip !== null)(`fusion on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const device = 'webgpu';

  it('x.mul(2).add(1).exp().sub(y).square().mean() runs in at most 2 dispatches (8 with fusion off)', async () => {
    const x = lr.randn([64, 33], { device });
    const y = lr.randn([64, 33], { device });
    // random tensors are lazy device draws: computed here, so only the chain's kernels count
    lr.realize(x.storage);
    lr.realize(y.storage);
    await lr.getBackend('webgpu').flush?.();
    const expr = () => x.mul(2).add(1).exp().sub(y).square().mean();
    let fusedValue = 0;
    const fused = await dispatches(async () => {
      fusedValue = (await lr.tidy(expr).item()) as number;
    });
    expect(fused).toBeLessThanOrEqual(2);
    lr.setFusion(false);
    let eagerValue = 0;
    const eager = await dispatches(async () => {
      eagerValue = (await lr.tidy(expr).item()) as number;
    });
    lr.setFusion(true);
    expect(eager).toBeGreaterThanOrEqual(6);
    expect(fusedValue).toBeCloseTo(eagerValue, 3);
    lr.dispose(x, y);
  });

  it('a chain that is never read takes no GPU buffer; reading it takes one', async () => {
    const x = lr.randn([1024], { device });
    await lr.getBackend('webgpu').flush?.();
    const inUse = lr.webgpuStats()!.bytesInUse;
    const y = lr.tidy(() => x.mul(2).add(1).exp().neg());
    expect(lr.webgpuStats()!.bytesInUse).toBe(inUse);
    await y.data();
    expect(lr.webgpuStats()!.bytesInUse).toBe(inUse + 4096);
    lr.dispose(x, y);
  });

  it('contiguous float32 chains take the vec4 path and agree with the CPU', async () => {
    const host = lr.randn([4, 1024], { device: 'cpu' });
    const bias = lr.randn([1024], { device: 'cpu' });
    const want = lr.tidy(() => host.mul(bias).add(1).tanh());
    const g = await host.to('webgpu');
    const gb = await bias.to('webgpu');
    // the bias broadcasts with a row stride: not vec4; a scalar broadcast is
    const got = lr.tidy(() => g.mul(gb).add(1).tanh());
    const got4 = lr.tidy(() => g.mul(3).add(1).tanh());
    const want4 = lr.tidy(() => host.mul(3).add(1).tanh());
    const close = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5);
    };
    close(await got.data(), await want.data());
    close(await got4.data(), await want4.data());
    lr.dispose(host, bias, want, g, gb, got, got4, want4);
  });
});
