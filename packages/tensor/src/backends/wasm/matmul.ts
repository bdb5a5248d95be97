import type { KernelTable } from '../../backend.js';
import type { WasmRuntime } from './runtime.js';

/**
 * Runs kernel calls on threads: `run(fn, tasks)` calls `fn(...tasks[t], ...scratch(t))` on
 * thread t (thread 0 is the caller) and returns when all are done; with more tasks than threads,
 * each thread takes the next task left until none is (a queue). `threads` is how many it has.
 */
export interface Executor {
  readonly threads: number;
  run(fn: string, tasks: readonly (readonly number[])[]): void;
  /**
   * Makes a generated kernel (`bytes`, a module exporting `run`; `run`, the caller's instance of
   * it) callable by `name` on every thread (the worker pool's `load`); absent on one thread. A
   * name already loaded is not loaded again.
   */
  load?(name: string, bytes: Uint8Array, run: (...args: number[]) => void): void;
}

/**
 * The executor of one thread: calls run in order on the caller's thread.
 *
 * @example
 * const exec = serialExecutor(rt);
 * exec.run('gemm', [args]);
 */
export function serialExecutor(rt: WasmRuntime): Executor {
  return {
    threads: 1,
    run(fn, tasks) {
      const f = rt.exports[fn];
      const s = rt.scratch;
      for (const t of tasks) f(...t, s.packA, s.packB, s.tile);
    },
  };
}

/**
 * How many parts to cut a large call into for `threads` threads: four a thread, taken from the
 * pool's queue, so a thread another process slows down takes fewer; one on one thread.
 *
 * @example
 * ranges(rows, queuedParts(exec.threads)); // 8 ranges on 2 threads
 */
export function queuedParts(threads: number): number {
  return threads > 1 ? 4 * threads : 1;
}

// A dispatch to one worker and back costs 9 µs (median; p90 14 µs) on the 2-core VM, and the
// gemm runs ≈ 32 GFLOP/s per thread: splitting pays from ≈ 0.6 MFLOP; 1 MFLOP leaves a margin.
const MIN_PARALLEL_FLOPS = 2 ** 20;

/**
 * Splits C's work between threads: whole batches when there are at least as many as threads,
 * else rows (in multiples of MR) when M ≥ N, else columns (multiples of NR). Each part is one
 * gemm call. Since gemm slices K by K alone, the split changes no result bit.
 */
function split(
  threads: number,
  batch: number,
  m: number,
  n: number,
  mr: number,
  nr: number,
): { b0: number; b1: number; r0: number; r1: number; c0: number; c1: number }[] {
  const parts: { b0: number; b1: number; r0: number; r1: number; c0: number; c1: number }[] = [];
  const even = (total: number, unit: number, i: number) =>
    Math.min(total, unit * Math.round((i * total) / threads / unit));
  for (let t = 0; t < threads; t++) {
    if (batch >= threads) {
      parts.push({ b0: even(batch, 1, t), b1: even(batch, 1, t + 1), r0: 0, r1: m, c0: 0, c1: n });
    } else if (m >= n) {
      parts.push({
        b0: 0,
        b1: batch,
        r0: even(m, mr, t),
        r1: t === threads - 1 ? m : even(m, mr, t + 1),
        c0: 0,
        c1: n,
      });
    } else {
      parts.push({
        b0: 0,
        b1: batch,
        r0: 0,
        r1: m,
        c0: even(n, nr, t),
        c1: t === threads - 1 ? n : even(n, nr, t + 1),
      });
    }
  }
  return parts.filter((p) => p.b1 > p.b0 && p.r1 > p.r0 && p.c1 > p.c0);
}

/**
 * The `matmul` kernel on the Wasm gemm: out[B, M, N] = a[B, M, K]·b[B, K, N] for any strides of
 * a and b (transposed, sliced, broadcast over the batch), split over the executor's threads.
 *
 * @example
 * registerKernels('cpu', { matmul: wasmMatmul(rt, serialExecutor(rt)) });
 */
export function wasmMatmul(rt: WasmRuntime, exec: Executor): KernelTable['matmul'] {
  return (a, b, batch, m, k, n) => {
    const out = rt.storages.allocate('float32', batch * m * n);
    if (batch * m * n === 0) return out;
    if (k === 0) {
      out.handle.fill(0);
      return out;
    }
    // operands outside the heap move into it (once: a weight is then read in place every step)
    const pa = rt.storages.adoptView(a);
    const pb = rt.storages.adoptView(b);
    const pc = rt.storages.address(out)!;
    const [bsa, rsa, csa] = a.strides.map((s) => 4 * s);
    const [bsb, rsb, csb] = b.strides.map((s) => 4 * s);
    const ldc = 4 * n;
    const bsc = 4 * m * n;
    const parts = 2 * batch * m * n * k >= MIN_PARALLEL_FLOPS ? queuedParts(exec.threads) : 1;
    const tasks = split(parts, batch, m, n, rt.gemm.mr, rt.gemm.nr).map((p) => [
      pa + p.b0 * bsa + p.r0 * rsa,
      bsa,
      rsa,
      csa,
      pb + p.b0 * bsb + p.c0 * csb,
      bsb,
      rsb,
      csb,
      pc + p.b0 * bsc + p.r0 * ldc + 4 * p.c0,
      bsc,
      ldc,
      p.b1 - p.b0,
      p.r1 - p.r0,
      k,
      p.c1 - p.c0,
    ]);
    exec.run('gemm', tasks);
    return out;
  };
}
