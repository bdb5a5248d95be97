import { describe, expect, it } from 'vitest';
import { matmul as tsMatmul } from '../../src/backends/cpu/matmul.js';
import { storageOf } from '../../src/backends/cpu/storage.js';
import { serialExecutor, wasmMatmul } from '../../src/backends/wasm/matmul.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import type { Storage, View } from '../../src/storage.js';
import '../../src/index.js';

const rt = new WasmRuntime();
const matmul = wasmMatmul(rt, serialExecutor(rt));

let seed = 7;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32 - 0.5;
}
function randomArray(n: number): Float32Array {
  return Float32Array.from({ length: n }, rand);
}

/** A [batch, rows, cols] view of `data`, optionally transposed/strided/broadcast over the batch. */
function view(
  storage: Storage,
  batch: number,
  rows: number,
  cols: number,
  opts: { transposed?: boolean; broadcast?: boolean; pad?: number; offset?: number } = {},
): View {
  const pad = opts.pad ?? 0;
  const [rs, cs] = opts.transposed ? [1, rows + pad] : [cols + pad, 1];
  const matrix = opts.transposed ? cols * (rows + pad) : rows * (cols + pad);
  return {
    storage,
    shape: [batch, rows, cols],
    strides: [opts.broadcast ? 0 : matrix, rs, cs],
    offset: opts.offset ?? 0,
  };
}

function elements(batch: number, rows: number, cols: number, opts: Parameters<typeof view>[4] = {}): number {
  const pad = opts.pad ?? 0;
  const matrix = opts.transposed ? cols * (rows + pad) : rows * (cols + pad);
  return (opts.offset ?? 0) + (opts.broadcast ? 1 : batch) * matrix;
}

function abs(v: View): View {
  const data = (v.storage.handle as Float32Array).map(Math.abs);
  return { ...v, storage: storageOf(data, 'float32') };
}

/** Asserts wasm ≈ TS reference within float32 accumulation error (k·2⁻²³ of Σ|a·b| per element). */
function check(a: View, b: View, batch: number, m: number, k: number, n: number): void {
  const got = matmul(a, b, batch, m, k, n).handle as Float32Array;
  const want = tsMatmul(a, b, batch, m, k, n).handle as Float32Array;
  const bound = tsMatmul(abs(a), abs(b), batch, m, k, n).handle as Float32Array;
  expect(got.length).toBe(batch * m * n);
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]) || !Number.isFinite(want[i])) {
      expect(got[i]).toBe(want[i]);
      continue;
    }
    const err = Math.abs(got[i] - want[i]);
    if (err > (k + 2) * 2 ** -23 * bound[i] + 1e-30) {
      throw new Error(`[${batch},${m},${k},${n}] element ${i}: ${got[i]} vs ${want[i]}`);
    }
  }
}

describe('wasm matmul', () => {
  const sizes = [1, 3, 17, 257];
  it('matches the TypeScript kernel on odd sizes, row-major operands', () => {
    for (const m of sizes)
      for (const k of sizes)
        for (const n of sizes) {
          if (m * k * n > 257 * 257 * 17) continue;
          const a = rt.storages.upload(randomArray(m * k), 'float32');
          const b = storageOf(randomArray(k * n), 'float32'); // outside the heap: copied in
          check(view(a, 1, m, k), view(b, 1, k, n), 1, m, k, n);
        }
  });

  it('matches with transposed, strided, offset and broadcast-batch operands', () => {
    const cases: [number, number, number, number][] = [
      [3, 17, 33, 9],
      [2, 257, 3, 17],
      [4, 5, 300, 7],
      [1, 64, 64, 64],
    ];
    for (const [batch, m, k, n] of cases) {
      for (const ta of [false, true])
        for (const tb of [false, true]) {
          const oa = { transposed: ta, pad: 3, offset: 5 };
          const ob = { transposed: tb, broadcast: true, pad: 1, offset: 2 };
          const a = rt.storages.upload(randomArray(elements(batch, m, k, oa)), 'float32');
          const b = rt.storages.upload(randomArray(elements(batch, k, n, ob)), 'float32');
          check(view(a, batch, m, k, oa), view(b, batch, k, n, ob), batch, m, k, n);
        }
    }
  });

  it('packs A the same way for 4- and 6-row strips: the bits of either, any layout', () => {
    // packA's row-major (rows two at a time), column-major (a strip's k-th values at once) and
    // strided paths, for both micro-kernel heights (mr 4 without relaxed SIMD, 6 with it)
    const [r4, r6] = [4, 6].map((mr) => new WasmRuntime({ gemm: { mr } }));
    expect([r4.gemm.mr, r6.gemm.mr]).toEqual([4, 6]);
    for (const [batch, m, k, n] of [
      [1, 19, 7, 9],
      [2, 13, 33, 8],
    ] as const) {
      for (const ta of [false, true]) {
        const oa = { transposed: ta, pad: ta ? 0 : 2, offset: 1 };
        const aData = randomArray(elements(batch, m, k, oa));
        const bData = randomArray(elements(batch, k, n, {}));
        const bitsOf = (r: WasmRuntime) => {
          const a = view(r.storages.upload(aData, 'float32'), batch, m, k, oa);
          const b = view(r.storages.upload(bData, 'float32'), batch, k, n);
          const out = wasmMatmul(r, serialExecutor(r))(a, b, batch, m, k, n);
          return Array.from(new Uint32Array((out.handle as Float32Array).slice().buffer));
        };
        expect(bitsOf(r4)).toEqual(bitsOf(r6));
        check(
          view(rt.storages.upload(aData, 'float32'), batch, m, k, oa),
          view(rt.storages.upload(bData, 'float32'), batch, k, n),
          batch,
          m,
          k,
          n,
        );
      }
    }
  });

  it('propagates NaN and Inf as the reference does', () => {
    const [m, k, n] = [9, 19, 13];
    const ad = randomArray(m * k);
    const bd = randomArray(k * n);
    ad[3] = Number.NaN;
    ad[2 * k + 4] = Number.POSITIVE_INFINITY;
    bd[5 * n + 6] = Number.NEGATIVE_INFINITY;
    const a = rt.storages.upload(ad, 'float32');
    const b = rt.storages.upload(bd, 'float32');
    check(view(a, 1, m, k), view(b, 1, k, n), 1, m, k, n);
  });

  it('gives zeros for k = 0 and an empty result for m = 0', () => {
    const a = rt.storages.upload(new Float32Array(0), 'float32');
    const out = matmul(view(a, 2, 3, 0), view(a, 2, 0, 4), 2, 3, 0, 4).handle as Float32Array;
    expect(Array.from(out)).toEqual(new Array(24).fill(0));
    expect((matmul(view(a, 1, 0, 3), view(a, 1, 3, 2), 1, 0, 3, 2).handle as Float32Array).length).toBe(0);
  });
});
