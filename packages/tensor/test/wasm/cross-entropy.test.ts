import { afterAll, describe, expect, it } from 'vitest';
import type { CrossEntropyRowsParams } from '../../src/backend.js';
import { crossEntropyRows as tsCrossEntropyRows } from '../../src/backends/cpu/cross-entropy.js';
import { storageOf } from '../../src/backends/cpu/storage.js';
import { serialExecutor } from '../../src/backends/wasm/matmul.js';
import { WorkerPool } from '../../src/backends/wasm/pool.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import { wasmKernelTable } from '../../src/backends/wasm/table.js';
import type { TypedArray } from '../../src/dtype.js';
import type { Storage, View } from '../../src/storage.js';
import '../../src/index.js';

/**
 * The Wasm `crossEntropyRows` kernel against the TypeScript reference (backends/cpu/cross-entropy.ts,
 * itself tested against float64 loops in ../cross-entropy.test.ts): losses and in-place
 * gradients within a float32 ulp or two (the exp is math.ts's, ≈ 1e-14 relative, not Math.exp),
 * NaN where NaN, exact zeros on ignored rows; odd widths, smoothing, strided labels, logits at an
 * offset, NaN/±Inf rows; identical bits on 1 and 2 threads; bad labels refused before x is written.
 */
const rt = new WasmRuntime();
const pools: WorkerPool[] = [];
afterAll(() => {
  for (const p of pools) p.terminate();
});

let seed = 3;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}
function logits(n: number, specials: boolean): Float32Array {
  const sp = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0];
  return Float32Array.from({ length: n }, () => {
    const u = rand();
    return specials && u < 0.01 ? sp[Math.floor(u * 400)] : (rand() - 0.5) * 16;
  });
}
/** A copy of `data` as a [rows, cols] view at element offset `offset` (heap or plain memory). */
function rowsView(data: Float32Array, rows: number, cols: number, offset: number, heap: boolean): View {
  const padded = new Float32Array(offset + data.length);
  padded.set(data, offset);
  const storage = heap ? rt.storages.upload(padded, 'float32') : storageOf(padded, 'float32');
  return { storage, shape: [rows, cols], strides: [cols, 1], offset };
}
/** int32 labels at every `stride`-th element. */
function labelsView(labels: number[], stride: number): View {
  const data = new Int32Array(labels.length * stride).fill(12345);
  labels.forEach((t, i) => {
    data[i * stride] = t;
  });
  return { storage: rt.storages.upload(data, 'int32'), shape: [labels.length], strides: [stride], offset: 0 };
}
const f32 = (s: Storage): Float32Array => (s.handle as Float32Array).slice();
const rowsOf = (v: View): Float32Array => {
  const n = v.shape[0] * v.shape[1];
  return (v.storage.handle as Float32Array).slice(v.offset, v.offset + n);
};
/** Within `ulps` float32 ulps of want (relative 2^-23 each), NaN where NaN, 0 exactly where 0. */
function expectNear(got: Float32Array, want: Float32Array, ulps: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (Number.isNaN(w)) expect(g, `${what}[${i}]`).toBeNaN();
    else if (!Number.isFinite(w) || w === 0) expect(g, `${what}[${i}]`).toBe(w);
    else
      expect(Math.abs(g - w), `${what}[${i}] ${g} vs ${w}`).toBeLessThanOrEqual(
        ulps * 2 ** -23 * Math.abs(w) + 1e-30,
      );
  }
}

describe('Wasm crossEntropyRows', () => {
  const ran: string[] = [];
  const serial = serialExecutor(rt);
  const k = wasmKernelTable(rt, {
    threads: 1,
    run(fn, tasks) {
      ran.push(fn);
      serial.run(fn, tasks);
    },
  });

  it('matches the TypeScript kernel: losses and in-place gradients (odd widths, smoothing, ignored rows, specials, strides)', () => {
    let calls = 0;
    for (const cols of [1, 2, 3, 65, 256, 1001])
      for (const eps of [0, 0.1])
        for (const specials of [false, true])
          for (const writeGrad of [false, true]) {
            const rows = 6;
            const data = logits(rows * cols, specials);
            const labels = Array.from({ length: rows }, (_, r) =>
              r % 3 === 1 ? -100 : Math.floor(rand() * cols),
            );
            const params: CrossEntropyRowsParams = { ignoreIndex: -100, labelSmoothing: eps, writeGrad };
            const what = `cols=${cols} eps=${eps} specials=${specials} writeGrad=${writeGrad}`;
            // the Wasm kernel on a plain (non-heap) storage at an offset: it adopts it
            const xw = rowsView(data, rows, cols, 3, false);
            const xt = rowsView(data, rows, cols, 3, false);
            const lw = labelsView(labels, 2);
            const got = f32(k.crossEntropyRows(xw, lw, rows, cols, params));
            const want = f32(tsCrossEntropyRows(xt, labelsView(labels, 2), rows, cols, params));
            expectNear(got, want, 2, `${what} loss`);
            expectNear(rowsOf(xw), rowsOf(xt), 2, `${what} x`);
            if (!writeGrad) expect(Array.from(rowsOf(xw))).toEqual(Array.from(data));
            calls++;
          }
    expect(ran.filter((f) => f === 'ce_rows').length).toBe(calls); // no TypeScript fallback
  });

  it('refuses a label out of [0, V) that is not ignoreIndex before writing x, as the TypeScript kernel', () => {
    const data = logits(2 * 4, false);
    for (const bad of [4, -1]) {
      const x = rowsView(data, 2, 4, 0, true);
      const before = ran.length;
      expect(() =>
        k.crossEntropyRows(x, labelsView([0, bad], 1), 2, 4, {
          ignoreIndex: -100,
          labelSmoothing: 0,
          writeGrad: true,
        }),
      ).toThrow(new RegExp(`^crossEntropyRows: label ${bad} is out of bounds for 4 classes`));
      expect(ran.length).toBe(before);
      expect(Array.from(rowsOf(x))).toEqual(Array.from(data));
    }
  });

  it('gives identical bits on 1 and 2 threads', async () => {
    const pool = await WorkerPool.create(rt, 2);
    pools.push(pool);
    const two = wasmKernelTable(rt, pool);
    const [rows, cols] = [301, 257]; // above the parallel threshold
    const data = logits(rows * cols, true);
    const labels = Array.from({ length: rows }, (_, r) => (r % 7 === 0 ? -100 : (r * 31) % cols));
    const params: CrossEntropyRowsParams = { ignoreIndex: -100, labelSmoothing: 0.05, writeGrad: true };
    const x1 = rowsView(data, rows, cols, 0, true);
    const x2 = rowsView(data, rows, cols, 0, true);
    const l1 = f32(k.crossEntropyRows(x1, labelsView(labels, 1), rows, cols, params));
    const l2 = f32(two.crossEntropyRows(x2, labelsView(labels, 1), rows, cols, params));
    // NaN's sign and payload are not specified by Wasm (engine tiers differ): compare NaN as NaN
    const bits = (a: TypedArray) =>
      Array.from(new Uint32Array(Float32Array.from(a, (v) => (Number.isNaN(v) ? Number.NaN : v)).buffer));
    expect(bits(l2)).toEqual(bits(l1));
    expect(bits(rowsOf(x2))).toEqual(bits(rowsOf(x1)));
  });
});
