import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { initWebGPU } from './helpers.js';

/** Buffer pool, batching and error surfaces of the WebGPU backend. */
const skip = await initWebGPU();

describe.skipIf(skip !== null)(`webgpu memory and errors${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('a steady-state loop allocates no new GPU buffers and leaks no tensors', async () => {
    const w = lr.randn([33, 17], { device: 'webgpu' });
    const step = () =>
      lr.tidy(() => {
        const x = lr.randn([8, 33], { device: 'webgpu' });
        const y = x.matmul(w).relu().sum(1).softmax(0);
        w.sub_(lr.full([33, 17], 1e-3, { device: 'webgpu' }));
        return y.sum();
      });
    // warm-up: the pool fills until one batch of dispatches finds every buffer it frees reusable
    for (let i = 0; i < 10; i++) step().dispose();
    // like a training loop that reads its loss every step
    const run = async () => {
      const loss = step();
      const v = await loss.item();
      loss.dispose();
      return v;
    };
    for (let i = 0; i < 5; i++) await run();
    await lr.getBackend('webgpu').flush?.();
    const before = lr.webgpuStats()!.buffersCreated;
    const live = lr.memory().numTensors;
    for (let i = 0; i < 50; i++) await run();
    expect(lr.webgpuStats()!.buffersCreated).toBe(before);
    expect(await run()).toBeCloseTo(1, 5);
    expect(lr.memory().numTensors).toBe(live);
    w.dispose();
  });

  it('records many dispatches per submit (fusion off: one kernel per op)', async () => {
    lr.setFusion(false);
    const s0 = { ...lr.webgpuStats()! };
    const x = lr.ones([100], { device: 'webgpu' });
    let y = x;
    for (let i = 0; i < 40; i++) {
      const next = y.add(1);
      if (y !== x) y.dispose();
      y = next;
    }
    expect(await y.sum().item()).toBe(4100);
    const s1 = lr.webgpuStats()!;
    expect(s1.dispatches - s0.dispatches).toBeGreaterThanOrEqual(41);
    expect(s1.submits - s0.submits).toBeLessThanOrEqual(2);
    lr.dispose(x, y);
    lr.setFusion(true);
  });

  it('a tensor larger than one storage binding is a clear error', () => {
    const max = lr.getBackend('webgpu').maxStorageBytes;
    const n = Math.floor(max / 4) + 1;
    expect(() => lr.zeros([n], { device: 'webgpu' })).toThrow(/exceeds this GPU's largest storage binding/);
  });

  it('mixing devices in one op is an error; to() moves data both ways', async () => {
    const a = lr.tensor([1, 2, 3], { device: 'cpu' });
    const g = await a.to('webgpu');
    expect(() => a.add(g)).toThrow(/same device/);
    const back = await g.mul(2).to('cpu');
    expect(back.device).toBe('cpu');
    expect(await back.toArray()).toEqual([2, 4, 6]);
    lr.dispose(a, g, back);
  });

  it('destroyWebGPU releases the device; later ops fail clearly; init makes a new one', async () => {
    lr.destroyWebGPU();
    expect(() => lr.ones([3], { device: 'webgpu' })).toThrow(/not initialised/);
    await lr.init({ backend: 'webgpu' });
    lr.setDefaultDevice('cpu');
    const h = lr.ones([3], { device: 'webgpu' });
    expect(await h.sum().item()).toBe(3);
    const survivor = lr.ones([2], { device: 'webgpu' });
    lr.destroyWebGPU();
    // tensors that outlive their device can still be disposed (their memory is already gone)
    expect(() => survivor.dispose()).not.toThrow();
    expect(() => survivor.exp()).toThrow(/exp: tensor #\d+ \[2\] was disposed/);
    h.dispose();
  });

  it('tensors of a destroyed device refuse ops and reads clearly, and memory() stops counting them', async () => {
    await lr.init({ backend: 'webgpu' });
    lr.setDefaultDevice('cpu');
    const cpuBefore = lr.memory().devices.cpu;
    const a = lr.tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3], device: 'webgpu' });
    const lazy = a.mul(2); // an uncomputed chain
    const view = a.T;
    const w = lr.ones([2, 4], { device: 'webgpu' });
    const live = lr.memory().devices.webgpu;
    expect(live?.tensors).toBeGreaterThanOrEqual(4);
    expect(live?.bytes).toBeGreaterThan(0);
    const totalBefore = lr.memory().numBytes;
    lr.destroyWebGPU();
    expect(lr.memory().devices.webgpu).toEqual({ tensors: 0, storages: 0, bytes: 0 });
    expect(lr.memory().numBytes).toBe(totalBefore - (live?.bytes ?? 0));
    expect(lr.memory().devices.cpu).toEqual(cpuBefore);
    // with no device, and after a new one is made
    const gone = /belongs to a WebGPU device that was destroyed/;
    expect(() => a.exp()).toThrow(/^exp: this tensor belongs to a WebGPU device that was destroyed/);
    await lr.init({ backend: 'webgpu' });
    lr.setDefaultDevice('cpu');
    const fresh = lr.tensor([10, 20, 30], { device: 'webgpu' });
    const stats = lr.webgpuStats();
    const inUse = stats?.bytesInUse ?? 0;
    expect(() => a.exp()).toThrow(/^exp: this tensor belongs to a WebGPU device that was destroyed/);
    expect(() => lazy.add(1)).toThrow(/^add: this tensor belongs/);
    expect(() => fresh.add(lazy.reshape([6]).slice(0, 0, 3))).toThrow(/^reshape: this tensor belongs/);
    expect(() => view.matmul(w)).toThrow(/^matmul: this tensor belongs/);
    expect(() => a.sum()).toThrow(/^sum: this tensor belongs/);
    expect(() => a.add_(1)).toThrow(gone);
    await expect(a.data()).rejects.toThrow(/^data: this tensor belongs/);
    await expect(lazy.toArray()).rejects.toThrow(gone);
    await expect(a.to('cpu')).rejects.toThrow(/^to: this tensor belongs/);
    // a new device's tensors are counted from zero; disposing the old ones changes nothing there
    expect(lr.memory().devices.webgpu?.tensors).toBe(1);
    lr.dispose(a, lazy, view, w);
    expect(lr.memory().devices.webgpu?.tensors).toBe(1);
    expect(lr.memory().devices.webgpu?.bytes).toBe(12);
    // no buffer of the old device went into the new pool: new work still runs and reads back
    expect(lr.webgpuStats()?.bytesInUse).toBe(inUse);
    const sum = fresh.add(lr.ones([3], { device: 'webgpu' })).sum();
    expect(await sum.item()).toBe(63);
    lr.dispose(fresh, sum);
    lr.destroyWebGPU();
  });
});
