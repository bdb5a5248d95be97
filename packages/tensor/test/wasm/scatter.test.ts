import { afterAll, describe, expect, it } from 'vitest';
import { indexAdd as tsIndexAdd, scatterAdd as tsScatterAdd } from '../../src/backends/cpu/indexing.js';
import { storageOf } from '../../src/backends/cpu/storage.js';
import { type Executor, serialExecutor } from '../../src/backends/wasm/matmul.js';
import { WorkerPool } from '../../src/backends/wasm/pool.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import { wasmKernelTable } from '../../src/backends/wasm/table.js';
import type { TypedArray } from '../../src/dtype.js';
import { contiguousStrides, sizeOf } from '../../src/shape.js';
import type { Storage, View } from '../../src/storage.js';
import '../../src/index.js';

/**
 * The Wasm `scatterAdd` / `indexAdd` (scatter.ts) against the TypeScript kernels
 * (backends/cpu/indexing.ts, themselves tested against nested loops in the op suite): the same
 * float32 adds in the same order, so bit-identical outputs (NaN where NaN), with duplicate
 * indices, odd sizes (1, 3, 17, 257), every dim of ranks 1–4, index smaller than src and target,
 * strided operands at offsets, outside the heap or in it, int32 and NaN/±Inf/−0; a bad index
 * raises the TypeScript kernel's error; thread counts 1, 2, 4 give the same bits.
 */
const rt = new WasmRuntime();
const pools: WorkerPool[] = [];
afterAll(() => {
  for (const p of pools) p.terminate();
});

let seed = 17;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

/**
 * A view of `shape` holding `values(i)` in row-major order, placed inside a larger buffer when
 * `strided` (each dim padded by one, at an offset of 5), in the heap or in plain memory.
 */
function makeView(
  shape: number[],
  dtype: 'float32' | 'int32',
  values: (i: number) => number,
  strided: boolean,
  heap: boolean,
): View {
  const outerShape = strided ? shape.map((d) => d + 1) : shape;
  const strides = contiguousStrides(outerShape);
  const offset = strided ? 5 : 0;
  const data =
    dtype === 'int32'
      ? new Int32Array(offset + sizeOf(outerShape))
      : new Float32Array(offset + sizeOf(outerShape));
  data.fill(dtype === 'int32' ? 999 : Number.NaN); // padding: a read of it would show
  const pos = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < sizeOf(shape); i++) {
    data[offset + pos.reduce((o, p, d) => o + p * strides[d], 0)] = values(i);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++pos[d] < shape[d]) break;
      pos[d] = 0;
    }
  }
  const storage = heap ? rt.storages.upload(data, dtype) : storageOf(data, dtype);
  return { storage, shape, strides, offset };
}
const float = (specials: boolean) => () => {
  const u = rand();
  if (specials && u < 0.03) return pick([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0]);
  // magnitudes from 1e-3 to 1e3: the order of float32 adds changes the bits
  return (rand() - 0.5) * 10 ** (rand() * 6 - 3);
};
const int = () => Math.floor(rand() * 2 ** 31) * (rand() < 0.5 ? -1 : 1); // sums wrap

/** Equal bit for bit, except that any NaN matches any NaN. */
function expectSame(got: Storage, want: Storage, what: string): void {
  const g = got.handle as TypedArray;
  const w = want.handle as TypedArray;
  expect(g.length, what).toBe(w.length);
  for (let i = 0; i < w.length; i++) {
    if (Number.isNaN(w[i])) expect(g[i], `${what}[${i}]`).toBeNaN();
    else if (!Object.is(g[i], w[i])) expect(g[i], `${what}[${i}]`).toBe(w[i]);
  }
}

function recordingTable(): { k: ReturnType<typeof wasmKernelTable>; ran: string[] } {
  const ran: string[] = [];
  const serial = serialExecutor(rt);
  const exec: Executor = {
    threads: 1,
    run(fn, tasks) {
      ran.push(fn);
      serial.run(fn, tasks);
    },
  };
  return { k: wasmKernelTable(rt, exec), ran };
}

/**
 * The calls of one scatter: the dtype's Wasm kernel only (no TypeScript fallback), once when
 * every axis coalesces into the kernel's three (`oneSlice`), else once per slice.
 */
function expectWasmRan(calls: string[], dtype: 'float32' | 'int32', oneSlice: boolean): void {
  const fn = dtype === 'int32' ? 'scatter_add_i32' : 'scatter_add_f32';
  if (oneSlice) expect(calls).toEqual([fn]);
  else {
    expect(calls.length).toBeGreaterThan(0);
    expect(new Set(calls)).toEqual(new Set([fn]));
  }
}

const SIZES = [1, 3, 17, 257];
/** A random shape of `rank` dims from SIZES, at most `cap` elements. */
function shapeOf(rank: number, cap: number): number[] {
  for (;;) {
    const s = Array.from({ length: rank }, () => pick(SIZES));
    if (sizeOf(s) <= cap) return s;
  }
}

describe('Wasm scatterAdd and indexAdd', () => {
  it('scatterAdd equals the TypeScript kernel bit for bit (ranks 1–4, every dim, duplicates, strides, int32)', () => {
    const { k, ran } = recordingTable();
    for (let trial = 0; trial < 160; trial++) {
      const rank = 1 + (trial % 4);
      const target = shapeOf(rank, 6000);
      const dim = Math.floor(rand() * rank);
      // index: ≤ target off `dim` (sometimes smaller), any length along it; src ≥ index
      const index = target.map((t, d) =>
        d === dim ? pick([1, 3, 17, 40]) : rand() < 0.7 ? t : 1 + Math.floor(rand() * t),
      );
      const src = index.map((n) => n + (rand() < 0.3 ? 2 : 0));
      const dtype = rand() < 0.2 ? 'int32' : 'float32';
      const strided = trial % 3 === 1;
      const heap = trial % 2 === 0;
      const values = dtype === 'int32' ? int : float(trial % 5 === 0);
      // few distinct positions: duplicates are the rule (a size of 1 takes only index 0)
      const size = target[dim];
      const spots = Array.from({ length: Math.min(size, 3) }, () => Math.floor(rand() * size));
      const t = makeView(target, dtype, values, strided && trial % 2 === 1, heap);
      const i = makeView(index, 'int32', () => pick(spots), strided, heap);
      const s = makeView(src, dtype, values, strided, !heap);
      const before = ran.length;
      const got = k.scatterAdd(t, dim, i, s);
      const want = tsScatterAdd(t, dim, i, s);
      expectSame(got, want, `scatterAdd ${dtype} target ${target} dim ${dim} index ${index} src ${src}`);
      // an index smaller than the target off `dim` leaves axes of rank 3 and 4 uncoalesced
      expectWasmRan(ran.slice(before), dtype, rank <= 2);
    }
  });

  it('indexAdd equals the TypeScript kernel bit for bit (ranks 1–4, every dim, duplicates, strides, int32)', () => {
    const { k, ran } = recordingTable();
    for (let trial = 0; trial < 120; trial++) {
      const rank = 1 + (trial % 4);
      const target = shapeOf(rank, 6000);
      const dim = Math.floor(rand() * rank);
      const rows = pick([1, 3, 17, 257]);
      const src = target.map((t, d) => (d === dim ? rows : t));
      const dtype = rand() < 0.2 ? 'int32' : 'float32';
      const strided = trial % 3 === 1;
      const values = dtype === 'int32' ? int : float(trial % 5 === 0);
      const size = target[dim];
      const spots = Array.from({ length: Math.min(size, 4) }, () => Math.floor(rand() * size));
      const t = makeView(target, dtype, values, false, trial % 2 === 0);
      const i = makeView([rows], 'int32', () => pick(spots), strided, true);
      const s = makeView(src, dtype, values, strided, trial % 2 === 1);
      const before = ran.length;
      expectSame(
        k.indexAdd(t, dim, i, s),
        tsIndexAdd(t, dim, i, s),
        `indexAdd ${dtype} ${target} dim ${dim} rows ${rows}`,
      );
      expectWasmRan(ran.slice(before), dtype, rank <= 2 || !strided);
    }
  });

  it('adds duplicates in index order: 1e8 + 1 + 1 − 1e8 is 0 in float32 one way, 2 the other', () => {
    const { k, ran } = recordingTable();
    const t = makeView([2], 'float32', () => 0, false, true);
    const s = makeView([4], 'float32', (i) => [1e8, 1, 1, -1e8][i], false, true);
    const i = makeView([4], 'int32', () => 1, false, true);
    expect(Array.from(k.scatterAdd(t, 0, i, s).handle as Float32Array)).toEqual([0, 0]);
    const reversed = makeView([4], 'float32', (j) => [-1e8, 1, 1, 1e8][3 - j], false, true);
    expect(Array.from(k.indexAdd(t, 0, i, reversed).handle as Float32Array)).toEqual([0, 0]);
    const late = makeView([4], 'float32', (j) => [1, 1, 1e8, -1e8][j], false, true);
    expect(Array.from(k.scatterAdd(t, 0, i, late).handle as Float32Array)).toEqual([0, 0]); // 2 + 1e8 rounds to 1e8
    const early = makeView([4], 'float32', (j) => [1e8, -1e8, 1, 1][j], false, true);
    expect(Array.from(k.scatterAdd(t, 0, i, early).handle as Float32Array)).toEqual([0, 2]);
    expect(ran).toEqual(Array(4).fill('scatter_add_f32'));
  });

  it('raises the TypeScript kernel’s error for a negative or out-of-range index, running no Wasm', () => {
    const { k, ran } = recordingTable();
    for (const bad of [-1, 3, 2 ** 31 - 1, -(2 ** 31)]) {
      const t = makeView([3, 17], 'float32', () => 1, false, true);
      const i = makeView([2, 17], 'int32', (j) => (j === 20 ? bad : j % 3), false, true);
      const s = makeView([2, 17], 'float32', () => 2, false, true);
      const message = `index ${bad} is out of bounds for a dimension of size 3`;
      expect(() => tsScatterAdd(t, 0, i, s)).toThrow(message);
      expect(() => k.scatterAdd(t, 0, i, s)).toThrow(message);
      const rows = makeView([3], 'int32', (j) => (j === 2 ? bad : j), true, false);
      const src = makeView([3, 17], 'float32', () => 2, false, true);
      expect(() => tsIndexAdd(t, 0, rows, src)).toThrow(message);
      expect(() => k.indexAdd(t, 0, rows, src)).toThrow(message);
      // indexAdd checks its whole index, even when src is empty
      const empty = makeView([0, 3], 'float32', () => 0, false, true);
      const emptySrc = makeView([3, 3], 'float32', () => 0, false, true);
      expect(() => k.indexAdd(empty, 1, rows, emptySrc)).toThrow(/out of bounds for a dimension of size 3/);
    }
    expect(ran).toEqual([]);
  });

  it('leaves bool to the TypeScript kernel and returns a copy for an empty index', () => {
    const { k, ran } = recordingTable();
    const t = makeView([3], 'float32', (i) => i + 1, true, false);
    const none = makeView([0], 'int32', () => 0, false, true);
    const got = k.scatterAdd(
      t,
      0,
      none,
      makeView([0], 'float32', () => 0, false, true),
    );
    expect(Array.from(got.handle as Float32Array)).toEqual([1, 2, 3]);
    const b = { storage: storageOf(new Uint8Array([1, 0, 1]), 'bool'), shape: [3], strides: [1], offset: 0 };
    const bi = makeView([2], 'int32', () => 1, false, true);
    expect(Array.from(k.indexAdd(b, 0, bi, { ...b, shape: [2] }).handle as Uint8Array)).toEqual(
      Array.from(tsIndexAdd(b, 0, bi, { ...b, shape: [2] }).handle as Uint8Array),
    );
    expect(ran).toEqual([]);
  });

  it('gives identical bits on 1, 2 and 4 threads, split along the outer or the inner dims', async () => {
    const results: number[][][] = [];
    for (const threads of [1, 2, 4]) {
      const pool = await WorkerPool.create(rt, threads);
      pools.push(pool);
      const split: number[] = [];
      const k = wasmKernelTable(rt, {
        threads: pool.threads,
        run(fn, tasks) {
          split.push(tasks.length);
          pool.run(fn, tasks);
        },
      });
      seed = 99;
      // an embedding's backward: 300 rows of 257 into 61 (dim 0: split along the 257 columns)
      const rows = makeView([300], 'int32', () => Math.floor(rand() * 61), false, true);
      const grads = makeView([300, 257], 'float32', float(true), false, true);
      const table = makeView([61, 257], 'float32', () => 0, false, true);
      // 257 rows of 300 scattered along dim 1 (split along the 257 rows)
      const x = makeView([257, 311], 'float32', float(false), false, true);
      const idx = makeView([257, 300], 'int32', () => Math.floor(rand() * 311), false, true);
      const src = makeView([257, 300], 'float32', float(true), false, true);
      const bits = (s: Storage) =>
        Array.from(
          new Uint32Array(
            Float32Array.from(s.handle as Float32Array, (v) => (Number.isNaN(v) ? Number.NaN : v)).buffer,
          ),
        );
      results.push([bits(k.indexAdd(table, 0, rows, grads)), bits(k.scatterAdd(x, 1, idx, src))]);
      expect(split).toEqual([threads, threads]);
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });
});
