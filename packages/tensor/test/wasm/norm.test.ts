import { afterAll, describe, expect, it } from 'vitest';
import type { NormKind } from '../../src/backend.js';
import { norm as tsNorm, normBackward as tsNormBackward } from '../../src/backends/cpu/norm.js';
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
 * The Wasm `norm` / `normBackward` kernels against the TypeScript reference (backends/cpu/norm.ts,
 * itself tested against float64 loops in ../norm.test.ts): the same float64 operations in the
 * same order, so bit-identical outputs (NaN where NaN), over layer and RMS, odd widths, missing
 * weight or bias, NaN/±Inf/−0 inputs, strided and fused inputs; and identical bits on 1 and 2
 * threads. A recording executor checks that the Wasm kernels ran (no silent fallback).
 */
const rt = new WasmRuntime();
const pools: WorkerPool[] = [];
afterAll(() => {
  for (const p of pools) p.terminate();
});

let seed = 5;
function randomArray(n: number, specials = false): Float32Array {
  const sp = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0];
  return Float32Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const u = seed / 2 ** 32;
    return specials && u < 0.02 ? sp[Math.floor(u * 250)] : u * 6 - 3;
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
/** A [n] view of a storage's elements from `offset`. */
const vec = (s: Storage, n: number): View => ({ storage: s, shape: [n], strides: [1], offset: 0 });
/** The bits of each element; NaN's sign and payload are not specified by Wasm (engine tiers differ), so NaN is one value. */
const bits = (s: Storage | null): number[] =>
  s
    ? Array.from(
        new Uint32Array(
          Float32Array.from(s.handle as TypedArray, (v) => (Number.isNaN(v) ? Number.NaN : v)).buffer,
        ),
      )
    : [];
/** Equal bit for bit, except that any NaN matches any NaN. */
function expectSame(got: Storage | null, want: Storage | null, what: string): void {
  expect(got === null, what).toBe(want === null);
  if (!got || !want) return;
  const g = got.handle as Float32Array;
  const w = want.handle as Float32Array;
  expect(g.length, what).toBe(w.length);
  for (let i = 0; i < w.length; i++) {
    if (Number.isNaN(w[i])) expect(g[i], `${what}[${i}]`).toBeNaN();
    else expect(g[i], `${what}[${i}]`).toBe(w[i]); // Object.is: −0 and +0 differ
  }
}

describe('Wasm norm and normBackward', () => {
  const ran: string[] = [];
  const serial = serialExecutor(rt);
  const k = wasmKernelTable(rt, {
    threads: 1,
    run(fn, tasks) {
      ran.push(fn);
      serial.run(fn, tasks);
    },
  });

  it('equal the TypeScript kernels bit for bit (layer/RMS, odd widths, no weight or bias, specials, strided and fused inputs)', () => {
    let cases = 0;
    for (const kind of ['layer', 'rms'] as NormKind[])
      for (const cols of [1, 2, 3, 64, 129])
        for (const specials of [false, true]) {
          const rows = 7;
          const data = randomArray(rows * cols, specials);
          const x = view(data, [rows, cols]);
          const transposed: View = { ...view(data, [cols, rows]), shape: [rows, cols], strides: [1, rows] };
          const scaled: ElementwiseProgram = {
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
            consts: [1.5],
            shape: [rows, cols],
          };
          const weight = view(randomArray(cols), [cols]);
          const bias = view(randomArray(cols), [cols]);
          const grad = loadProgram(view(randomArray(rows * cols, specials), [rows, cols]));
          for (const program of [loadProgram(x), loadProgram(transposed), scaled])
            for (const [w, b] of [
              [weight, bias],
              [null, null],
              [weight, null],
            ] as const) {
              const what = `${kind} cols=${cols} specials=${specials} w=${w !== null} b=${b !== null}`;
              const got = k.norm(kind, program, rows, cols, w, b, 1e-5, true);
              const want = tsNorm(kind, program, rows, cols, w, b, 1e-5, true);
              expectSame(got.y, want.y, `${what} y`);
              expectSame(got.mean, want.mean, `${what} mean`);
              expectSame(got.rstd, want.rstd, `${what} rstd`);
              const noStats = k.norm(kind, program, rows, cols, w, b, 1e-5, false);
              expect(noStats.mean).toBe(null);
              expect(noStats.rstd).toBe(null);
              expectSame(noStats.y, want.y, `${what} y without stats`);
              // the backward from the forward's statistics (float32, as autograd saves them)
              const mean = want.mean && vec(want.mean, rows);
              const rstd = want.rstd && vec(want.rstd, rows);
              if (!rstd) throw new Error('no rstd');
              const dx = k.normBackward(kind, program, grad, rows, cols, w, mean, rstd);
              const dxWant = tsNormBackward(kind, program, grad, rows, cols, w, mean, rstd);
              expectSame(dx, dxWant, `${what} dx`);
              cases++;
            }
        }
    expect(cases).toBe(2 * 5 * 2 * 3 * 3);
    // every call took the Wasm kernels: no TypeScript fallback (3 forwards, 1 backward per case)
    expect(ran.filter((f) => f === 'norm_fwd').length).toBe(2 * cases);
    expect(ran.filter((f) => f === 'norm_bwd').length).toBe(cases);
  });

  it('give identical bits on 1 and 2 threads (rows split between them)', async () => {
    const pool = await WorkerPool.create(rt, 2);
    pools.push(pool);
    const two = wasmKernelTable(rt, pool);
    const [rows, cols] = [513, 96]; // above the parallel threshold
    const x = loadProgram(view(randomArray(rows * cols, true), [rows, cols]));
    const g = loadProgram(view(randomArray(rows * cols), [rows, cols]));
    const w = view(randomArray(cols), [cols]);
    const b = view(randomArray(cols), [cols]);
    for (const kind of ['layer', 'rms'] as NormKind[]) {
      const a = k.norm(kind, x, rows, cols, w, b, 1e-6, true);
      const c = two.norm(kind, x, rows, cols, w, b, 1e-6, true);
      expect(bits(c.y)).toEqual(bits(a.y));
      expect(bits(c.mean)).toEqual(bits(a.mean));
      expect(bits(c.rstd)).toEqual(bits(a.rstd));
      const mean = a.mean && vec(a.mean, rows);
      const rstd = a.rstd && vec(a.rstd, rows);
      if (!rstd) throw new Error('no rstd');
      expect(bits(two.normBackward(kind, x, g, rows, cols, w, mean, rstd))).toEqual(
        bits(k.normBackward(kind, x, g, rows, cols, w, mean, rstd)),
      );
      expectSame(c.y, tsNorm(kind, x, rows, cols, w, b, 1e-6, true).y, `${kind} y vs TypeScript`);
    }
  });

  it('hand strided weights to the TypeScript kernel (same values)', () => {
    const [rows, cols] = [3, 4];
    const x = loadProgram(view(randomArray(rows * cols), [rows, cols]));
    const wide = view(randomArray(2 * cols), [2 * cols]);
    const strided: View = { ...wide, shape: [cols], strides: [2] };
    const before = ran.length;
    const got = k.norm('layer', x, rows, cols, strided, null, 1e-5, false);
    expect(ran.length).toBe(before); // the fallback ran
    expectSame(got.y, tsNorm('layer', x, rows, cols, strided, null, 1e-5, false).y, 'strided weight');
  });
});
