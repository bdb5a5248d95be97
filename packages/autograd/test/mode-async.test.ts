import { enableGrad, isGradEnabled, noGrad, noGradAsync } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

describe('noGradAsync', () => {
  it('keeps recording off across awaits, and restores it when the promise settles', async () => {
    const w = lr.ones([2], { requiresGrad: true });
    const flags: boolean[] = [];
    const out = await noGradAsync(async () => {
      flags.push(isGradEnabled());
      await tick();
      flags.push(isGradEnabled());
      const y = w.mul(2);
      await y.toArray();
      return y;
    });
    expect(flags).toEqual([false, false]);
    expect(out.requiresGrad).toBe(false);
    expect(isGradEnabled()).toBe(true);
    const z = w.mul(2);
    expect(z.requiresGrad).toBe(true);
    lr.dispose(w, out, z);
  });

  it('restores the mode when fn rejects, nests, and lets a synchronous enableGrad record', async () => {
    const w = lr.ones([1], { requiresGrad: true });
    await expect(
      noGradAsync(async () => {
        await tick();
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(isGradEnabled()).toBe(true);
    await noGradAsync(async () => {
      await noGradAsync(async () => {
        await tick();
      });
      expect(isGradEnabled()).toBe(false); // the outer call is still pending
      const r = enableGrad(() => w.mul(3));
      expect(r.requiresGrad).toBe(true);
      r.dispose();
    });
    expect(isGradEnabled()).toBe(true);
    w.dispose();
  });

  it('backward of a loss computed while one is pending names it', async () => {
    const w = lr.ones([1], { requiresGrad: true });
    let release = () => {};
    const pending = noGradAsync(() => new Promise<void>((resolve) => (release = resolve)));
    const loss = w.mul(2).sum();
    expect(() => loss.backward()).toThrow(/1 noGradAsync call\(s\) are pending/);
    release();
    await pending;
    lr.dispose(w, loss);
  });

  it('noGrad of an async function points to noGradAsync', () => {
    expect(() => noGrad(async () => 1)).toThrow(/use noGradAsync/);
  });
});
