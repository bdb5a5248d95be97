import { afterAll, describe, expect, it } from 'vitest';
import { serialExecutor, wasmMatmul } from '../../src/backends/wasm/matmul.js';
import { threadsAvailable, WorkerPool } from '../../src/backends/wasm/pool.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import type { View } from '../../src/storage.js';
import '../../src/index.js';

const rt = new WasmRuntime();
const pools: WorkerPool[] = [];
afterAll(() => {
  for (const p of pools) p.terminate();
});

let seed = 3;
function randomArray(n: number): Float32Array {
  return Float32Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  });
}

describe('wasm worker pool', () => {
  it('starts workers in Node over the shared memory', async () => {
    expect(threadsAvailable(rt)).toBe(true);
    const pool = await WorkerPool.create(rt, 3);
    pools.push(pool);
    expect(pool.threads).toBe(3);
  });

  it('gives bit-identical matmuls with 1, 2 and 4 threads (rows, columns and batches split)', async () => {
    const executors = [serialExecutor(rt), await WorkerPool.create(rt, 2), await WorkerPool.create(rt, 4)];
    pools.push(executors[1] as WorkerPool, executors[2] as WorkerPool);
    const cases: [number, number, number, number][] = [
      [1, 257, 129, 65], // rows split
      [1, 5, 300, 257], // columns split (M < N)
      [6, 33, 40, 17], // batches split
      [3, 100, 17, 100],
    ];
    for (const [batch, m, k, n] of cases) {
      const a = rt.storages.upload(randomArray(batch * m * k), 'float32');
      const b = rt.storages.upload(randomArray(k * n), 'float32');
      const va: View = { storage: a, shape: [batch, m, k], strides: [m * k, 1, m], offset: 0 }; // transposed
      const vb: View = { storage: b, shape: [batch, k, n], strides: [0, n, 1], offset: 0 }; // broadcast
      const outs = executors.map((e) => wasmMatmul(rt, e)(va, vb, batch, m, k, n).handle as Float32Array);
      for (const o of outs.slice(1)) {
        expect(o.length).toBe(outs[0].length);
        for (let i = 0; i < o.length; i++)
          if (!Object.is(o[i], outs[0][i])) throw new Error(`element ${i} differs`);
      }
    }
  });

  it('runs more tasks than threads from its queue: each task exactly once, by whichever thread is free', async () => {
    const pool = await WorkerPool.create(rt, 3);
    pools.push(pool);
    // 50 tasks doubling their own 37 floats: a task run twice (or never) would show
    const [n, each] = [50, 37];
    const x = rt.storages.upload(
      Float32Array.from({ length: n * each }, (_, i) => i + 1),
      'float32',
    );
    const two = rt.storages.upload(new Float32Array(n * each).fill(2), 'float32');
    const [xa, ta] = [rt.storages.address(x)!, rt.storages.address(two)!];
    pool.run(
      'mul_f32',
      Array.from({ length: n }, (_, t) => [xa + 4 * t * each, ta, each]),
    );
    const got = x.handle as Float32Array;
    for (let i = 0; i < n * each; i++) if (got[i] !== 2 * (i + 1)) throw new Error(`element ${i}: ${got[i]}`);
    // and a worker's error in a queued task still reaches the caller
    const bad = Array.from({ length: 9 }, (_, t) => (t === 7 ? [2 ** 31, ta, each] : [xa, ta, each]));
    expect(() => pool.run('mul_f32', bad)).toThrow(/out of bounds/);
  });

  it('reports a worker error, and after terminate runs on the caller only', async () => {
    const pool = await WorkerPool.create(rt, 2);
    // an address past the end of memory traps in the worker
    const bad = [2 ** 31, 0, 4, 4, 2 ** 31, 0, 4, 4, 2 ** 31, 0, 4, 1, 1, 1, 1];
    const ok = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // the caller’s own task long enough (a 1024³ product, ≈ 60 ms) that the worker takes its
    // share before the caller would take it back
    const n = 1024;
    const [a, c] = [rt.heap.alloc(4 * n * n), rt.heap.alloc(4 * n * n)];
    const long = [a, 0, 4 * n, 4, a, 0, 4 * n, 4, c, 0, 4 * n, 1, n, n, n];
    expect(() => pool.run('gemm', [long, bad])).toThrow(/wasm worker 1 failed in gemm.*out of bounds/s);
    rt.heap.free(a);
    rt.heap.free(c);
    // a task the caller takes back from a worker still asleep reports its error as the caller's
    expect(() => pool.run('gemm', [ok, bad])).toThrow(/out of bounds/);
    pool.run('gemm', [ok, ok]); // still usable
    pool.terminate();
    expect(() => pool.run('gemm', [ok, ok])).toThrow(/terminated/);
    pool.run('gemm', [ok]);
  });
});
