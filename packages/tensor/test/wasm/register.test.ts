import { describe, expect, it } from 'vitest';
import { crossEntropyRows } from '../../src/backends/cpu/cross-entropy.js';
import { loraMatmul } from '../../src/backends/cpu/lora-matmul.js';
import { norm, normBackward, normParamGrad } from '../../src/backends/cpu/norm.js';
import { cpuArray } from '../../src/backends/cpu/storage.js';
import { registerWasmKernels } from '../../src/backends/wasm/index.js';
import * as lr from '../../src/index.js';
import { wrap } from '../../src/ops/util.js';

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
    expect(ts).toEqual({ device: 'cpu', description: 'CPU (TypeScript)', reason: 'asked for' });
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

  it('the norm, cross-entropy and loraMatmul TypeScript kernels put their outputs in the heap too', async () => {
    const wasm = await registerWasmKernels({ threads: 1 });
    const heap = wasm.runtime.storages;
    const x = lr.tensor([1, 2, 4, 0, -1, 3], { shape: [2, 3] });
    const w = lr.tensor([1, 0.5, 2]);
    const labels = lr.tensor([2, 0], { dtype: 'int32' });
    const xp = { root: { kind: 'load', input: 0 }, inputs: [x.view_()], shape: [2, 3] } as never;
    const f = norm('layer', xp, 2, 3, w.view_(), null, 1e-5, true);
    const mean = f.mean ? { storage: f.mean, shape: [2], strides: [1], offset: 0 } : null;
    const rstd = f.rstd ? { storage: f.rstd, shape: [2], strides: [1], offset: 0 } : null;
    expect(mean && rstd).not.toBe(null);
    if (!mean || !rstd) return;
    const dx = normBackward('layer', xp, xp, 2, 3, w.view_(), mean, rstd);
    const pg = normParamGrad('layer', xp, xp, 2, 3, mean, rstd, true);
    const ce = crossEntropyRows(x.view_(), labels.view_(), 2, 3, {
      ignoreIndex: -100,
      labelSmoothing: 0,
      writeGrad: false,
    });
    const a3 = { ...x.view_(), shape: [1, 2, 3], strides: [6, 3, 1] };
    const w3 = { ...x.view_(), shape: [1, 3, 2], strides: [6, 2, 1] };
    const lm = loraMatmul(a3, w3, null, null, 1, 1, 2, 3, 2);
    const outs = [f.y, f.mean, f.rstd, dx, pg.weight, pg.bias, ce, lm];
    for (const o of outs) expect(o && heap.address(o)).not.toBe(null);
    // the values are those of plain float64 loops: row 0 = [1, 2, 4], mean 7/3
    const m0 = 7 / 3;
    const r0 = 1 / Math.sqrt(((1 - m0) ** 2 + (2 - m0) ** 2 + (4 - m0) ** 2) / 3 + 1e-5);
    expect((f.y.handle as Float32Array)[2]).toBeCloseTo((4 - m0) * r0 * 2, 5);
    const lse0 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(4));
    expect((ce.handle as Float32Array)[0]).toBeCloseTo(lse0 - 4, 5);
    // [[1, 2, 4], [0, -1, 3]] · [[1, 2], [4, 0], [-1, 3]]
    expect(Array.from(lm.handle as Float32Array)).toEqual([5, 14, -7, 9]);
    const blocks = wasm.runtime.heap.blocks;
    lr.dispose(outs.filter((o) => o !== null).map((o) => wrap(o, [o.size])));
    expect(wasm.runtime.heap.blocks).toBe(blocks - outs.length); // each output was one heap block
    lr.dispose([x, w, labels]);
    wasm.unregister();
  });

  it('says when it runs on one thread', async () => {
    const wasm = await registerWasmKernels({ threads: 1 });
    expect(wasm.backend.description).toMatch(/, 1 thread\)$/);
    wasm.unregister();
  });
});
