import { describe, expect, it } from 'vitest';
import { cpuArray } from '../../src/backends/cpu/storage.js';
import { registerWasmKernels } from '../../src/backends/wasm/index.js';
import * as lr from '../../src/index.js';

/** A small training-like workload: matmul, elementwise chain, reduction, softmax, gather. */
async function workload(): Promise<number[]> {
  const x = lr.randn([37, 19], { generator: new lr.Generator(3) });
  const w = lr.randn([19, 23], { generator: new lr.Generator(4) });
  const y = x.matmul(w).tanh().mul(1.5).add(x.sum(1, true)).softmax(-1);
  const out = Array.from(await y.data());
  lr.dispose([x, w, y]);
  return out;
}

describe('the Wasm kernels as the CPU default', () => {
  it("'cpu' runs the Wasm kernels from load, 'cpu-ts' the TypeScript ones, threads as asked", async () => {
    // in Node the engine registers the Wasm kernels on one thread when it loads
    expect(lr.getBackend('cpu').description).toMatch(/^CPU \(Wasm SIMD128.*, 1 thread\)$/);
    const onWasm = await workload();
    await lr.init({ backend: 'cpu', threads: 2 });
    expect(lr.getBackend('cpu').description).toMatch(/, 2 threads\)$/);
    const onTwo = await workload();
    const ts = await lr.init({ backend: 'cpu-ts' });
    expect(ts).toEqual({ device: 'cpu', description: 'CPU (TypeScript)' });
    const onTs = await workload();
    expect(onTwo).toEqual(onWasm);
    // tanh and the matmul's float32 accumulation differ from the TypeScript kernels in the last bits
    for (let i = 0; i < onTs.length; i++) expect(onWasm[i]).toBeCloseTo(onTs[i], 5);
    await lr.init({ backend: 'cpu', threads: 1 });
    expect(lr.getBackend('cpu').description).toMatch(/, 1 thread\)$/);
    await expect(lr.init({ backend: 'cpu', threads: 0 })).rejects.toThrow(
      /threads must be a positive integer, got 0/,
    );
    await expect(lr.init({ backend: 'cpu-js' as 'cpu' })).rejects.toThrow(/expected 'cpu', 'cpu-ts'/);
  });

  it('TypeScript kernels allocate their outputs in the heap; memory() counts what it counted before', async () => {
    const wasm = await registerWasmKernels({ threads: 1 });
    const heap = wasm.runtime.storages;
    const a = lr.tensor([3, 1, 2], { dtype: 'int32' });
    const sorted = lr.tensor([
      [1, 2],
      [3, 4],
    ]);
    // indexSelect over a bool tensor and an int32 sum stay TypeScript kernels: outputs in the heap
    const picked = lr.tensor([true, false, true]).indexSelect(0, lr.tensor([2, 0], { dtype: 'int32' }));
    const s = a.sum();
    expect(heap.address(picked.storage)).not.toBe(null);
    expect(heap.address(s.storage)).not.toBe(null);
    expect(await picked.toArray()).toEqual([true, true]);
    expect(await s.item()).toBe(6);
    const before = lr.memory();
    const blocks = wasm.runtime.heap.blocks;
    const c = sorted.matmul(sorted);
    expect(lr.memory().devices.cpu?.bytes).toBe((before.devices.cpu?.bytes ?? 0) + 16); // 4 floats
    expect(lr.memory().numTensors).toBe(before.numTensors + 1);
    expect(wasm.runtime.heap.blocks).toBe(blocks + 1);
    lr.dispose([a, sorted, picked, s, c]);
    expect(wasm.runtime.heap.blocks).toBe(blocks - 4); // released storages free their blocks
    const arr = cpuArray('float32', 100);
    expect(heap.address({ handle: arr } as never)).not.toBe(null);
    expect(Array.from(arr).every((v) => v === 0)).toBe(true); // zero-filled even when reused
    wasm.unregister();
    expect(lr.getBackend('cpu').description).toBe('CPU (TypeScript)');
    expect(heap.address({ handle: cpuArray('float32', 4) } as never)).toBe(null); // plain again
    expect(
      await lr
        .tensor([1, 2])
        .matmul(lr.tensor([3, 4]))
        .item(),
    ).toBe(11);
  });

  it('says when it runs on one thread', async () => {
    const wasm = await registerWasmKernels({ threads: 1 });
    expect(wasm.backend.description).toMatch(/, 1 thread\)$/);
    wasm.unregister();
  });
});
