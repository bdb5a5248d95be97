import { afterAll, describe, expect, it } from 'vitest';
import { loraMatmul as tsLoraMatmul } from '../../src/backends/cpu/lora-matmul.js';
import { softmax as tsSoftmax } from '../../src/backends/cpu/reduce.js';
import { serialExecutor } from '../../src/backends/wasm/matmul.js';
import { WorkerPool } from '../../src/backends/wasm/pool.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import { wasmKernelTable } from '../../src/backends/wasm/table.js';
import type { TypedArray } from '../../src/dtype.js';
import { type ElementwiseProgram, loadProgram } from '../../src/expr/program.js';
import { contiguousStrides } from '../../src/shape.js';
import type { Storage, View } from '../../src/storage.js';
import '../../src/index.js';

/**
 * Thread counts 1, 2 and 4 give bit-identical results (fixed split order: whole rows, batches
 * or C tiles per thread, K never split), and the Wasm softmax matches the TypeScript kernel.
 */
const rt = new WasmRuntime();
const pools: WorkerPool[] = [];
afterAll(() => {
  for (const p of pools) p.terminate();
});

let seed = 7;
function randomArray(n: number, specials = false): Float32Array {
  const sp = [Number.NaN, Infinity, -Infinity, -0];
  return Float32Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const u = seed / 2 ** 32;
    return specials && u < 0.01 ? sp[Math.floor(u * 400)] : u * 8 - 4;
  });
}
function view(data: Float32Array, shape: number[]): View {
  return {
    storage: rt.storages.upload(data, 'float32'),
    shape,
    strides: contiguousStrides(shape),
    offset: 0,
  };
}
const bits = (s: Storage): number[] => Array.from(new Uint32Array((s.handle as TypedArray).slice().buffer));

describe('Wasm kernels on 1, 2 and 4 threads', () => {
  it('give identical bits for matmul, reduce, softmax, Adam and elementwise', async () => {
    const tables = [];
    for (const t of [1, 2, 4]) {
      const pool = await WorkerPool.create(rt, t);
      pools.push(pool);
      tables.push(wasmKernelTable(rt, pool));
    }
    // big enough that every kernel splits (above each MIN_PARALLEL threshold)
    const a = view(randomArray(3 * 300 * 257), [3, 300, 257]);
    const b = view(randomArray(3 * 257 * 129), [3, 257, 129]);
    const x = view(randomArray(1031 * 257, true), [1031, 257]);
    const tanhX: ElementwiseProgram = {
      root: {
        kind: 'op',
        op: 'tanh',
        args: [{ kind: 'load', input: 0, dtype: 'float32' }],
        dtype: 'float32',
      },
      inputs: [x],
      consts: [],
      shape: x.shape,
    };
    const n = 2 ** 17 + 3;
    const [pData, gData] = [randomArray(n), randomArray(n)];
    const results = tables.map((k) => {
      const out: number[][] = [];
      out.push(bits(k.matmul(a, b, 3, 300, 257, 129)));
      out.push(bits(k.reduce('sum', loadProgram(x), 1031, 257, 'float32')));
      out.push(bits(k.reduce('sum', tanhX, 1031, 257, 'float32')));
      out.push(bits(k.softmax(loadProgram(x), 1031, 257)));
      out.push(bits(k.elementwise(tanhX)));
      const p = view(pData, [n]);
      const g = view(gData, [n]);
      const m = view(new Float32Array(n), [n]);
      const v = view(new Float32Array(n), [n]);
      const s = { decay: 0.01, l2: 0, beta1: 0.9, beta2: 0.999, stepSize: 1e-3, sqrtBc2: 0.03, eps: 1e-8 };
      k.adamUpdate(p, g, m, v, null, s);
      out.push(bits(p.storage), bits(m.storage), bits(v.storage));
      return out;
    });
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it('split generated elementwise kernels over the workers: same bits along any axis (1-D, 3-D strided)', async () => {
    const x1 = view(randomArray(2 ** 16 + 5, true), [2 ** 16 + 5]);
    const y1 = view(randomArray(2 ** 16 + 5), [2 ** 16 + 5]);
    // [6, 97, 61] read through a permutation: no axis coalesces
    const base = view(randomArray(61 * 97 * 6), [61, 97, 6]);
    const x3: View = { ...base, shape: [6, 97, 61], strides: [1, 6, 6 * 97] };
    const y3 = view(randomArray(6 * 97 * 61), [6, 97, 61]);
    const program = (x: View, y: View): ElementwiseProgram => ({
      root: {
        kind: 'op',
        op: 'add',
        args: [
          { kind: 'op', op: 'exp', args: [{ kind: 'load', input: 0, dtype: 'float32' }], dtype: 'float32' },
          {
            kind: 'op',
            op: 'mul',
            args: [
              { kind: 'load', input: 1, dtype: 'float32' },
              { kind: 'const', index: 0, dtype: 'float32' },
            ],
            dtype: 'float32',
          },
        ],
        dtype: 'float32',
      },
      inputs: [x, y],
      consts: [0.375],
      shape: x.shape,
    });
    const results: number[][][] = [];
    for (const t of [1, 2, 4]) {
      const pool = await WorkerPool.create(rt, t);
      pools.push(pool);
      const split: number[] = [];
      const k = wasmKernelTable(rt, {
        threads: pool.threads,
        run: (fn, tasks) => {
          if (fn.startsWith('ew|')) split.push(tasks.length);
          pool.run(fn, tasks);
        },
        load: (name, bytes, run) => pool.load(name, bytes, run),
      });
      results.push([x1, x3].map((x, i) => bits(k.elementwise(program(x, [y1, y3][i])))));
      // four parts a thread (the pool's queue), for both programs
      expect(split).toEqual(t > 1 ? [4 * t, Math.min(4 * t, 6)] : []); // the 3-D one splits its 6
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });
});

describe('Wasm softmax', () => {
  const ran = new Set<string>();
  const serial = serialExecutor(rt);
  const k = wasmKernelTable(rt, {
    threads: 1,
    run(fn, tasks) {
      ran.add(fn);
      serial.run(fn, tasks);
    },
  });
  it('matches the TypeScript kernel (odd widths, NaN/Inf rows, strided and fused inputs) within 1 ulp', () => {
    for (const cols of [1, 3, 17, 257]) {
      const rows = 5;
      const data = randomArray(rows * cols, true);
      if (cols > 1) data.fill(Number.NEGATIVE_INFINITY, 0, cols); // an all −Inf row: NaN, as in TS
      const x = view(data, [rows, cols]);
      const transposed: View = { ...view(data, [cols, rows]), shape: [rows, cols], strides: [1, rows] };
      const fused: ElementwiseProgram = {
        root: {
          kind: 'op',
          op: 'mul',
          args: [
            { kind: 'load', input: 0, dtype: 'float32' },
            { kind: 'const', index: 0, dtype: 'float32' },
          ],
          dtype: 'float32',
        },
        inputs: [x],
        consts: [0.125],
        shape: [rows, cols],
      };
      for (const program of [loadProgram(x), loadProgram(transposed), fused]) {
        const got = k.softmax(program, rows, cols).handle as Float32Array;
        const want = tsSoftmax(program, rows, cols).handle as Float32Array;
        for (let i = 0; i < got.length; i++) {
          if (Number.isNaN(want[i])) expect(got[i]).toBeNaN();
          else
            expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(
              1.2e-7 * Math.max(Math.abs(want[i]), 1e-30),
            );
        }
      }
    }
    expect(ran).toEqual(new Set(['softmax'])); // the Wasm kernel ran, not the TypeScript fallback
  });

  it('with row lengths gives the bits of the full rows padded with −∞, never reading the tails', () => {
    const [rows, cols] = [9, 13];
    const lens = Int32Array.from({ length: rows }, (_, r) => [0, 1, 2, 5, 12, 13, 7, 3, 13][r]);
    const data = randomArray(rows * cols, true);
    const padded = data.slice();
    const garbage = data.slice();
    for (let r = 0; r < rows; r++)
      for (let j = lens[r]; j < cols; j++) {
        padded[r * cols + j] = Number.NEGATIVE_INFINITY;
        garbage[r * cols + j] = j % 2 ? Number.NaN : 1e30; // would change the row if it were read
      }
    const run = (x: Float32Array, withLens: boolean) => {
      const xs = view(x, [rows, cols]).storage;
      const out = rt.storages.allocate('float32', rows * cols);
      const lse = rt.storages.allocate('float32', rows);
      const ls = rt.storages.upload(lens, 'int32');
      const at = (st: Storage) => rt.storages.address(st) ?? 0;
      rt.exports.softmax(at(xs), at(out), rows, cols, at(lse), withLens ? at(ls) : 0);
      const canon = (s: Storage) =>
        bits({
          ...s,
          handle: Float32Array.from(s.handle as Float32Array, (v) => (Number.isNaN(v) ? Number.NaN : v)),
        } as Storage);
      return { out: canon(out), lse: canon(lse) };
    };
    const want = run(padded, false);
    const got = run(garbage, true);
    expect(got.out).toEqual(want.out);
    expect(got.lse).toEqual(want.lse);
    // the row of length 0 has no key: NaN throughout and lse −∞, as the all −∞ row
    expect(Number.isNaN(new Float32Array(new Uint32Array(got.out.slice(0, cols)).buffer)[3])).toBe(true);
  });
});

describe('Wasm loraMatmul', () => {
  const k = wasmKernelTable(rt, serialExecutor(rt));
  it('matches the TypeScript kernel: residual + α·a·w, transposed a, no residual, an index', () => {
    const [batch, m, kk, n] = [2, 17, 8, 33];
    const a = view(randomArray(batch * m * kk), [batch, m, kk]);
    const aT: View = {
      ...view(randomArray(batch * kk * m), [batch, kk, m]),
      shape: [batch, m, kk],
      strides: [kk * m, 1, m],
    };
    const w = view(randomArray(batch * kk * n), [batch, kk, n]);
    const res = view(randomArray(batch * m * n), [batch, m, n]);
    const index = {
      storage: rt.storages.upload(new Int32Array([1, 0]), 'int32'),
      shape: [2],
      strides: [1],
      offset: 0,
    };
    for (const [x, r, idx, alpha] of [
      [a, res, null, 2],
      [aT, res, null, 0.5],
      [a, null, null, 3],
      [a, res, index, 2],
    ] as const) {
      const got = k.loraMatmul(x, w, idx, r, alpha, batch, m, kk, n).handle as Float32Array;
      const want = tsLoraMatmul(x, w, idx, r, alpha, batch, m, kk, n).handle as Float32Array;
      for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 4);
    }
  });
});
