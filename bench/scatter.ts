/**
 * The Wasm scatter kernels (backends/wasm/scatter.ts) beside the TypeScript kernels they replaced,
 * in one process on the same heap operands: milliseconds per call (a fresh copy of the target
 * included, as the op makes one) of
 * - `indexAdd` along dim 0: an embedding's backward, N rows of D gradients into a [V, D] table;
 * - `scatterAdd` along dim 1 of [N, D]: gather's backward (an index per element).
 *   pnpm bench bench/scatter.ts [--n 2048 --v 4096 --d 128 --threads 2 --reps 20]
 */
import { loadavg } from 'node:os';
import {
  indexAdd as tsIndexAdd,
  scatterAdd as tsScatterAdd,
} from '../packages/tensor/src/backends/cpu/indexing.js';
import type { Executor } from '../packages/tensor/src/backends/wasm/matmul.js';
import { serialExecutor } from '../packages/tensor/src/backends/wasm/matmul.js';
import { WorkerPool } from '../packages/tensor/src/backends/wasm/pool.js';
import { WasmRuntime } from '../packages/tensor/src/backends/wasm/runtime.js';
import { wasmKernelTable } from '../packages/tensor/src/backends/wasm/table.js';
import { contiguousStrides, sizeOf } from '../packages/tensor/src/shape.js';
import type { Storage, View } from '../packages/tensor/src/storage.js';
import '../packages/tensor/src/index.js';
import { numberArg } from './args.js';

const N = numberArg('n', 2048);
const V = numberArg('v', 4096);
const D = numberArg('d', 128);
const threads = numberArg('threads', 2);
const reps = numberArg('reps', 20);

const rt = new WasmRuntime();
function view(shape: number[], dtype: 'float32' | 'int32', value: (i: number) => number): View {
  const n = sizeOf(shape);
  const data =
    dtype === 'int32'
      ? Int32Array.from({ length: n }, (_, i) => value(i))
      : Float32Array.from({ length: n }, (_, i) => value(i));
  return { storage: rt.storages.upload(data, dtype), shape, strides: contiguousStrides(shape), offset: 0 };
}
/** Milliseconds per call: a warm-up of 3, then the best of `reps` calls (outputs freed): the load of a shared machine only adds. */
function time(fn: () => Storage): number {
  for (let i = 0; i < 3; i++) rt.storages.release(fn());
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const out = fn();
    best = Math.min(best, performance.now() - t0);
    rt.storages.release(out);
  }
  return best;
}

const pool = await WorkerPool.create(rt, threads);
const tables: [string, Executor][] = [
  ['Wasm, 1 thread', serialExecutor(rt)],
  [`Wasm, ${pool.threads} threads`, pool],
];
// one table each: its elementwise kernel (the target's copy) caches what it compiled
const kernels = tables.map(([label, exec]) => [label, wasmKernelTable(rt, exec)] as const);
const ids = view([N], 'int32', (i) => (i * 7919) % V);
const grads = view([N, D], 'float32', (i) => Math.sin(i));
const table = view([V, D], 'float32', () => 0);
const index = view([N, D], 'int32', (i) => (i * 31) % D);
const zeros = view([N, D], 'float32', () => 0);
const cases: [string, (k: Pick<ReturnType<typeof wasmKernelTable>, 'indexAdd' | 'scatterAdd'>) => Storage][] =
  [
    [`indexAdd [${N}, ${D}] into [${V}, ${D}]`, (k) => k.indexAdd(table, 0, ids, grads)],
    [`scatterAdd dim 1 of [${N}, ${D}]`, (k) => k.scatterAdd(zeros, 1, index, grads)],
  ];
console.log(`load ${loadavg()[0].toFixed(1)}`);
for (const [name, run] of cases) {
  const ts = time(() => run({ indexAdd: tsIndexAdd, scatterAdd: tsScatterAdd }));
  const parts = kernels.map(([label, k]) => {
    const ms = time(() => run(k));
    return `${label} ${ms.toFixed(3)} ms (${(ts / ms).toFixed(1)}x)`;
  });
  console.log(`${name}: TypeScript ${ts.toFixed(3)} ms; ${parts.join('; ')}`);
}
pool.terminate();
