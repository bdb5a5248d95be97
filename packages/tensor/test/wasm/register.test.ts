import { describe, expect, it } from 'vitest';
import { registerWasmKernels } from '../../src/backends/wasm/index.js';
import * as lr from '../../src/index.js';

describe('registerWasmKernels', () => {
  it("registers a heap-backed 'cpu' backend and the Wasm kernels, and puts the TypeScript ones back", async () => {
    await lr.init({ backend: 'cpu' });
    expect(lr.getBackend('cpu').description).toBe('CPU (TypeScript)');
    const wasm = await registerWasmKernels({ threads: 2 });
    expect(lr.getBackend('cpu').description).toMatch(/^CPU \(Wasm SIMD128.*, 2 threads\)$/);
    const before = lr.memory().devices.cpu?.bytes ?? 0;
    const a = lr.tensor([
      [1, 2],
      [3, 4],
    ]);
    expect(wasm.runtime.storages.address(a.storage)).not.toBe(null); // uploaded into the heap
    const c = a.matmul(a);
    expect(wasm.runtime.storages.address(c.storage)).not.toBe(null);
    expect(await c.toArray()).toEqual([
      [7, 10],
      [15, 22],
    ]);
    expect(lr.memory().devices.cpu?.bytes).toBe(before + 32); // counted as before: 4 bytes each
    const blocks = wasm.runtime.heap.blocks;
    lr.dispose([a, c]);
    expect(wasm.runtime.heap.blocks).toBe(blocks - 2); // released storages free their blocks
    const z = wasm.allocate('float32', 100);
    expect((z.handle as Float32Array).every((v) => v === 0)).toBe(true);
    wasm.unregister();
    expect(lr.getBackend('cpu').description).toBe('CPU (TypeScript)');
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
