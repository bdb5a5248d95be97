import { afterAll, describe, expect, it } from 'vitest';
import type { AttentionParams, CrossEntropyRowsParams, NormKind } from '../../src/backend.js';
import type { Executor } from '../../src/backends/wasm/matmul.js';
import { WorkerPool } from '../../src/backends/wasm/pool.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import { wasmKernelTable } from '../../src/backends/wasm/table.js';
import type { TypedArray } from '../../src/dtype.js';
import { loadProgram } from '../../src/expr/program.js';
import { dropThreshold } from '../../src/philox.js';
import { contiguousStrides } from '../../src/shape.js';
import type { Storage, View } from '../../src/storage.js';
import '../../src/index.js';

/**
 * The fused Wasm kernels (norm, cross-entropy, attention) give the same bits on 1, 2 and 4
 * threads: each thread takes whole rows, so no sum depends on the split. Sizes are above each
 * kernel's parallel threshold, and a recording executor checks that the work really was split
 * into as many tasks as threads (matmul, reduce, softmax, Adam and elementwise: threads.test.ts).
 */
const rt = new WasmRuntime();
const pools: WorkerPool[] = [];
afterAll(() => {
  for (const p of pools) p.terminate();
});

let seed = 11;
function randomArray(n: number, specials = false): Float32Array {
  const sp = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0];
  return Float32Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const u = seed / 2 ** 32;
    return specials && u < 0.01 ? sp[Math.floor(u * 400)] : u * 6 - 3;
  });
}
function view(data: TypedArray, shape: number[], dtype: 'float32' | 'int32' = 'float32'): View {
  return { storage: rt.storages.upload(data, dtype), shape, strides: contiguousStrides(shape), offset: 0 };
}
const asView = (s: Storage, shape: number[]): View => ({
  storage: s,
  shape,
  strides: contiguousStrides(shape),
  offset: 0,
});
/** The bits of each element; NaN's sign and payload are not specified by Wasm, so NaN is one value. */
const bits = (s: Storage | View | null): number[] => {
  if (!s) return [];
  const h = ('storage' in s ? s.storage : s).handle as Float32Array;
  return Array.from(new Uint32Array(Float32Array.from(h, (v) => (Number.isNaN(v) ? Number.NaN : v)).buffer));
};

/** Kernel tables on 1, 2 and 4 threads, each recording the most tasks one call of a function got. */
async function tables(): Promise<{ k: Kernels; split: Map<string, number> }[]> {
  const out = [];
  for (const t of [1, 2, 4]) {
    const pool = await WorkerPool.create(rt, t);
    pools.push(pool);
    expect(pool.threads).toBe(t);
    const split = new Map<string, number>();
    const exec: Executor = {
      threads: pool.threads,
      run(fn, tasks) {
        split.set(fn, Math.max(split.get(fn) ?? 0, tasks.length));
        pool.run(fn, tasks);
      },
    };
    out.push({ k: wasmKernelTable(rt, exec), split });
  }
  return out;
}
type Kernels = ReturnType<typeof wasmKernelTable>;

/**
 * Runs `fn` on each table; expects the same bits, and each of `fns` split into t tasks on t
 * threads ('any': some function split into t to 4t, the queued parts of attention.ts).
 */
async function sameOnEveryThreadCount(fns: string[] | 'any', fn: (k: Kernels) => number[][]): Promise<void> {
  const ts = await tables();
  const results = ts.map(({ k }) => fn(k));
  expect(results[0].flat().length).toBeGreaterThan(0);
  expect(results[1]).toEqual(results[0]);
  expect(results[2]).toEqual(results[0]);
  for (const [i, t] of [1, 2, 4].entries()) {
    const { split } = ts[i];
    if (fns === 'any') {
      // the attention's heads: from one range a thread to four (the pool's queue)
      const widest = Math.max(...split.values());
      expect(widest, `the widest split on ${t} threads`).toBeGreaterThanOrEqual(t);
      expect(widest, `the widest split on ${t} threads`).toBeLessThanOrEqual(t === 1 ? 1 : 4 * t);
    } else for (const name of fns) expect(split.get(name), `${name} on ${t} threads`).toBe(t);
  }
}

describe('fused Wasm kernels on 1, 2 and 4 threads', () => {
  it('norm and normBackward give identical bits (layer and RMS, 513 rows of 96)', async () => {
    const [rows, cols] = [513, 96]; // 49,248 elements: above MIN_PARALLEL_NORM (2^15)
    const x = loadProgram(view(randomArray(rows * cols, true), [rows, cols]));
    const g = loadProgram(view(randomArray(rows * cols), [rows, cols]));
    const w = view(randomArray(cols), [cols]);
    const b = view(randomArray(cols), [cols]);
    await sameOnEveryThreadCount(['norm_fwd', 'norm_bwd'], (k) =>
      (['layer', 'rms'] as NormKind[]).flatMap((kind) => {
        const f = k.norm(kind, x, rows, cols, w, b, 1e-6, true);
        if (!f.rstd) throw new Error('norm: no rstd with stats');
        const mean = f.mean && asView(f.mean, [rows]);
        const dx = k.normBackward(kind, x, g, rows, cols, w, mean, asView(f.rstd, [rows]));
        return [bits(f.y), bits(f.mean), bits(f.rstd), bits(dx)];
      }),
    );
  });

  it('crossEntropyRows gives identical losses and in-place gradients (301 rows of 257, ignored rows)', async () => {
    const [rows, cols] = [301, 257]; // 77,357 logits: above MIN_PARALLEL_CE (2^14)
    const data = randomArray(rows * cols, true);
    const labels = Int32Array.from({ length: rows }, (_, r) => (r % 7 === 0 ? -100 : (r * 31) % cols));
    const params: CrossEntropyRowsParams = { ignoreIndex: -100, labelSmoothing: 0.05, writeGrad: true };
    await sameOnEveryThreadCount(['ce_rows'], (k) => {
      const x = view(data.slice(), [rows, cols]);
      const loss = k.crossEntropyRows(x, view(labels, [rows], 'int32'), rows, cols, params);
      return [bits(loss), bits(x)];
    });
  });

  it('attention forward and backward give identical bits (GQA, causal, dropout; 97 queries × 101 keys)', async () => {
    const [b, h, hkv, l, s, e] = [1, 4, 2, 97, 101, 16]; // 9,797 scores a head: above MIN_PARALLEL_DROPMASK (2^13)
    const q = view(randomArray(b * h * l * e), [b, h, l, e]);
    const kk = view(randomArray(b * hkv * s * e), [b, hkv, s, e]);
    const v = view(randomArray(b * hkv * s * e), [b, hkv, s, e]);
    const grad = view(randomArray(b * h * l * e), [b, h, l, e]);
    const dropout = {
      p: 0.25,
      threshold: dropThreshold(0.25),
      scale: 1 / 0.75,
      key: { key0: 77, key1: 0xdeadbeef },
    };
    const cases: AttentionParams[] = [
      { scale: 0.25, causal: false, lse: true },
      { scale: 0.25, causal: true, lse: true, dropout },
    ];
    // the dropout mask is split by rows at least (attention.ts); any split must keep the bits
    await sameOnEveryThreadCount('any', (k) =>
      cases.flatMap((params) => {
        const f = k.attention(q, kk, v, null, params);
        if (!f.lse) throw new Error('attention: no lse');
        const out = asView(f.out, [b, h, l, e]);
        const g = k.attentionBackward(q, kk, v, null, out, grad, asView(f.lse, [b, h, l]), params);
        return [bits(f.out), bits(f.lse), bits(g.dq), bits(g.dk), bits(g.dv)];
      }),
    );
  });
});
