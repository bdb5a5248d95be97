import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { initWebGPU } from './helpers.js';

/**
 * Recording shortcuts of the WebGPU backend: buffers freed while a batch is open are reused by
 * later kernels of the same batch (never by uploads, which the queue runs before the batch), and
 * cached bind groups / skipped state calls give the same results as fresh ones.
 */
const skip = await initWebGPU();
const dev = { device: 'webgpu' } as const;
const flush = (): Promise<void> => lr.getBackend('webgpu').flush?.() ?? Promise.resolve();

describe.skipIf(skip !== null)(`webgpu recording${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('an upload during an open batch does not overwrite a buffer the batch still reads', async () => {
    await flush();
    const n = 1000;
    const data = Float32Array.from({ length: n }, (_, i) => i);
    const a = lr.tensor(data, dev);
    await flush();
    const y = a.mul(2); // recorded, not submitted
    a.dispose(); // its buffer is free but the batch still reads it
    const b = lr.tensor(new Float32Array(n).fill(-7), dev); // same size class
    const z = b.add(1);
    expect(Array.from(await y.data())).toEqual(Array.from(data, (v) => 2 * v));
    expect(Array.from(await z.data())).toEqual(new Array(n).fill(-6));
    lr.dispose(y, b, z);
  });

  it('kernels reuse buffers freed earlier in the same batch and read the right values', async () => {
    await flush();
    const n = 777;
    const data = Float32Array.from({ length: n }, (_, i) => (i % 13) - 6);
    let x = lr.tensor(data, dev);
    await flush();
    const expected = Array.from(data);
    for (let step = 0; step < 40; step++) {
      const k = (step % 5) + 1;
      const next = step % 2 === 0 ? x.add(k) : x.mul(0.5);
      x.dispose(); // freed while the batch is open: the next op may write into it
      x = next;
      for (let i = 0; i < n; i++) expected[i] = step % 2 === 0 ? expected[i] + k : expected[i] * 0.5;
    }
    const got = await x.data();
    for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(expected[i], 5);
    x.dispose();
  });

  it('a repeated step (cached bind groups, skipped state calls) gives the same result every time', async () => {
    const w = lr.randn([24, 16], dev);
    const x = lr.randn([8, 24], dev);
    const idx = lr.tensor(new Int32Array([3, 1, 4, 1, 5]), dev);
    const step = () =>
      lr.tidy(() => {
        const h = x.matmul(w).relu();
        const m = lr.where(h.gt(0.1), h, h.neg()); // 4 storage bindings: one bind group for all
        return m.indexSelect(0, idx).sum(1).exp().sum();
      });
    const first = await step().item();
    for (let i = 0; i < 30; i++) {
      const v = step();
      expect(await v.item()).toBe(first);
      v.dispose();
    }
    lr.dispose(w, x, idx);
  });
});
