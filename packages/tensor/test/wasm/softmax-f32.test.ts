import { describe, expect, it } from 'vitest';
import { ModuleBuilder } from '../../src/backends/wasm/assembler.js';
import { expF32x4 } from '../../src/backends/wasm/math-f32x4.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import '../../src/index.js';

/**
 * The float32 exp (math-f32x4.ts) against Math.exp, and the attention's float32 row softmax
 * (`softmax_f32`) against a float64 softmax of the same rows and against the exact kernel.
 */
let seed = 3;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}

/** ulps between float32 values a and b (both finite). */
function ulps(a: number, b: number): number {
  const bits = new Int32Array(new Float32Array([a, b]).buffer);
  const key = (i: number) => (bits[i] < 0 ? -2147483648 - bits[i] : bits[i]);
  return Math.abs(key(0) - key(1));
}

describe('expF32x4', () => {
  const memory = new WebAssembly.Memory({ initial: 4 });
  const m = new ModuleBuilder({ initial: 1, shared: false });
  const f = m.function('exp4', ['i32', 'i32'], []);
  const [at, n] = [f.param(0), f.param(1)];
  const [i, x] = [f.local('i32'), f.local('v128')];
  f.for(i, 0, n, 4, () => {
    f.get(at).get(i).i32(2).op('i32.shl', 'i32.add').mem('v128.load').set(x);
    f.get(at).get(i).i32(2).op('i32.shl', 'i32.add');
    expF32x4(f, x);
    f.mem('v128.store');
  });
  const exp4 = new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { env: { memory } }).exports
    .exp4 as (at: number, n: number) => void;
  const run = (xs: number[]): Float32Array => {
    const a = new Float32Array(memory.buffer, 0, Math.ceil(xs.length / 4) * 4);
    a.set(xs);
    exp4(0, a.length);
    return a.slice(0, xs.length);
  };

  it('is within 2 ulp of Math.exp over [−87, 88], exact at 0', () => {
    const xs = Array.from({ length: 40000 }, () => Math.fround(rand() * 175 - 87));
    const got = run(xs);
    let worst = 0;
    for (let k = 0; k < xs.length; k++) worst = Math.max(worst, ulps(got[k], Math.fround(Math.exp(xs[k]))));
    expect(worst).toBeLessThanOrEqual(2);
    expect(run([0])[0]).toBe(1);
  });

  it('gives 0 below −87.33 and for −∞, +∞ above 88, NaN for NaN', () => {
    const got = run([-Infinity, -1000, -87.5, Infinity, 1000, 88.5, Number.NaN]);
    expect(Array.from(got.slice(0, 6))).toEqual([0, 0, 0, Infinity, Infinity, Infinity]);
    expect(got[6]).toBeNaN();
  });
});

describe('softmax_f32', () => {
  const rt = new WasmRuntime();
  const heapF32 = (at: number, n: number) => new Float32Array(rt.heap.memory.buffer, at, n);
  const call = (name: string, x: Float32Array, rows: number, cols: number, lens?: Int32Array) => {
    const xa = rt.heap.alloc(4 * x.length);
    const oa = rt.heap.alloc(4 * x.length);
    const la = rt.heap.alloc(4 * rows);
    const na = lens ? rt.heap.alloc(4 * rows) : 0;
    try {
      heapF32(xa, x.length).set(x);
      if (lens) new Int32Array(rt.heap.memory.buffer, na, rows).set(lens);
      rt.exports[name](xa, oa, rows, cols, la, na);
      return { y: heapF32(oa, x.length).slice(), lse: heapF32(la, rows).slice() };
    } finally {
      for (const a of [xa, oa, la]) rt.heap.free(a);
      if (lens) rt.heap.free(na);
    }
  };

  // x − m rounds to float32 (half an ulp of |x − m|, ≤ 6e-8·|x − m| relative in e^(x−m)): the
  // scores it reads carry that much rounding from their float32 gemm anyway
  const tol = (d: number, want: number) => (4e-7 + 1.2e-7 * d) * want + 1e-30;
  it('matches a float64 softmax within 4e-7 + 1.2e-7·|x − m| relative, and the lse, over odd widths', () => {
    for (const cols of [1, 3, 17, 128, 257]) {
      const rows = 5;
      const x = Float32Array.from({ length: rows * cols }, () => rand() * 20 - 10);
      const { y, lse } = call('softmax_f32', x, rows, cols);
      const exact = call('softmax', x, rows, cols);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
        const m = Math.max(...row);
        const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
        for (let j = 0; j < cols; j++) {
          const want = Math.exp(row[j] - m) / s;
          const d = m - row[j];
          expect(Math.abs(y[r * cols + j] - want)).toBeLessThanOrEqual(tol(d, want));
          expect(Math.abs(y[r * cols + j] - exact.y[r * cols + j])).toBeLessThanOrEqual(tol(d, want));
        }
        expect(Math.abs(lse[r] - (m + Math.log(s)))).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(m)));
      }
    }
  });

  it('gives the same bits for a −∞ tail read and a tail given by lens; a row of −∞ is NaN', () => {
    const [rows, cols] = [6, 19];
    const lens = Int32Array.from([19, 1, 4, 5, 18, 7]);
    const x = Float32Array.from({ length: rows * cols }, (_, k) =>
      k % cols < lens[Math.floor(k / cols)] ? rand() * 8 - 4 : Number.NEGATIVE_INFINITY,
    );
    const read = call('softmax_f32', x, rows, cols);
    const given = call('softmax_f32', x, rows, cols, lens);
    expect(Array.from(given.y)).toEqual(Array.from(read.y));
    expect(Array.from(given.lse)).toEqual(Array.from(read.lse));
    const none = call('softmax_f32', new Float32Array(5).fill(Number.NEGATIVE_INFINITY), 1, 5);
    expect(Array.from(none.y).every(Number.isNaN)).toBe(true);
    expect(none.lse[0]).toBe(Number.NEGATIVE_INFINITY);
  });

  it('softmax_from_lse: exp(x − lse) over each row’s lens, 0 past it, NaN on a row whose lse is −∞', () => {
    const [rows, cols] = [5, 21];
    const lens = Int32Array.from([21, 3, 0, 17, 8]);
    const x = Float32Array.from({ length: rows * cols }, (_, k) =>
      k % cols < lens[Math.floor(k / cols)] ? rand() * 10 - 5 : Number.NEGATIVE_INFINITY,
    );
    const want = call('softmax_f32', x, rows, cols, lens);
    const xa = rt.heap.alloc(4 * x.length);
    const la = rt.heap.alloc(4 * 2 * rows);
    const na = rt.heap.alloc(4 * rows);
    try {
      heapF32(xa, x.length).set(x);
      // lse rows 8 bytes apart (a strided view)
      const lse = heapF32(la, 2 * rows);
      for (let r = 0; r < rows; r++) lse[2 * r] = want.lse[r];
      new Int32Array(rt.heap.memory.buffer, na, rows).set(lens);
      rt.exports.softmax_from_lse(xa, rows, cols, la, 8, na);
      const got = heapF32(xa, x.length);
      for (let k = 0; k < x.length; k++) {
        const r = Math.floor(k / cols);
        if (lens[r] === 0) expect(got[k]).toBeNaN();
        else if (k % cols >= lens[r]) expect(got[k]).toBe(0);
        else expect(Math.abs(got[k] - want.y[k])).toBeLessThanOrEqual(2e-6 * want.y[k] + 1e-30);
      }
    } finally {
      for (const a of [xa, la, na]) rt.heap.free(a);
    }
  });
});
