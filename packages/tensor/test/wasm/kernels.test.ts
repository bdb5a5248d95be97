import { afterAll, describe, expect, it } from 'vitest';
import type { AdamUpdateParams, ReduceOp } from '../../src/backend.js';
import { elementwise as tsElementwise } from '../../src/backends/cpu/elementwise.js';
import { gather as tsGather, indexSelect as tsIndexSelect } from '../../src/backends/cpu/indexing.js';
import { adamUpdate as tsAdamUpdate } from '../../src/backends/cpu/optim.js';
import { reduce as tsReduce } from '../../src/backends/cpu/reduce.js';
import { WasmElementwise } from '../../src/backends/wasm/elementwise.js';
import { serialExecutor } from '../../src/backends/wasm/matmul.js';
import { WorkerPool } from '../../src/backends/wasm/pool.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import { wasmKernelTable } from '../../src/backends/wasm/table.js';
import type { DType, TypedArray } from '../../src/dtype.js';
import { type ElementwiseProgram, type Expr, loadProgram } from '../../src/expr/program.js';
import type { ScalarOpName } from '../../src/expr/table.js';
import { contiguousStrides } from '../../src/shape.js';
import type { Storage, View } from '../../src/storage.js';
import '../../src/index.js';

const rt = new WasmRuntime();
// records which Wasm kernels ran, so a silent fallback to TypeScript would fail the last test
const ran = new Set<string>();
const direct = serialExecutor(rt);
const serial = wasmKernelTable(rt, {
  threads: 1,
  run(fn, tasks) {
    ran.add(fn);
    direct.run(fn, tasks);
  },
});
const pools: WorkerPool[] = [];
afterAll(() => {
  for (const p of pools) p.terminate();
});

let seed = 11;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}
function randomArray(n: number, special = false): Float32Array {
  const specials = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, -0];
  return Float32Array.from({ length: n }, () =>
    special && rand() < 0.05 ? specials[Math.floor(rand() * specials.length)] : rand() * 4 - 2,
  );
}
/** The values a kernel returns, or its error message. */
function outcome(f: () => Storage): number[] | string {
  try {
    return Array.from(f().handle as TypedArray);
  } catch (e) {
    return (e as Error).message;
  }
}
function dense(storage: Storage, shape: number[], offset = 0): View {
  return { storage, shape, strides: contiguousStrides(shape), offset };
}
function upload(data: TypedArray, dtype: DType = 'float32'): Storage {
  return rt.storages.upload(data, dtype);
}
function values(s: Storage): number[] {
  return Array.from(s.handle as TypedArray);
}

describe('wasm reduce', () => {
  const ops: ReduceOp[] = ['sum', 'prod', 'max', 'min', 'argmax', 'argmin'];
  it('matches the TypeScript kernel on odd sizes with NaN, ±Inf and ±0', () => {
    for (const special of [false, true])
      for (const outer of [1, 3, 17])
        for (const inner of [1, 3, 4, 17, 257]) {
          const data = randomArray(outer * inner + 2, special);
          const view = dense(upload(data), [outer, inner], 2);
          for (const op of ops) {
            const dtype: DType = op.startsWith('arg') ? 'int32' : 'float32';
            const got = values(serial.reduce(op, loadProgram(view), outer, inner, dtype));
            const want = values(tsReduce(op, loadProgram(view), outer, inner, dtype));
            for (let i = 0; i < outer; i++) {
              const [g, w] = [got[i], want[i]];
              if (op === 'sum' && Number.isFinite(w)) {
                // float64 partial sums in another order: at most one float32 rounding apart
                expect(Math.abs(g - w)).toBeLessThanOrEqual(Math.abs(w) * 2 ** -23 + 1e-37);
              } else if (op === 'max' || op === 'min') {
                // only the sign of an extreme zero may differ (±0 tie in different lanes)
                expect(g === w || (Number.isNaN(g) && Number.isNaN(w))).toBe(true);
              } else {
                expect(Object.is(g, w), `${op} [${outer},${inner}] row ${i}: ${g} vs ${w}`).toBe(true);
              }
            }
          }
        }
  });

  it('falls back to the TypeScript kernel for strided views and storages outside the heap', () => {
    const data = randomArray(24);
    const strided: View = { storage: upload(data), shape: [4, 3], strides: [1, 4], offset: 0 };
    expect(values(serial.reduce('sum', loadProgram(strided), 4, 3, 'float32'))).toEqual(
      values(tsReduce('sum', loadProgram(strided), 4, 3, 'float32')),
    );
  });

  it('gives the same bits with 1, 2 and 4 threads (whole rows per thread)', async () => {
    const execs = [serialExecutor(rt), await WorkerPool.create(rt, 2), await WorkerPool.create(rt, 4)];
    pools.push(execs[1] as WorkerPool, execs[2] as WorkerPool);
    const [outer, inner] = [1000, 301];
    const view = dense(upload(randomArray(outer * inner, true)), [outer, inner]);
    for (const op of ops) {
      const dtype: DType = op.startsWith('arg') ? 'int32' : 'float32';
      const outs = execs.map((e) =>
        values(wasmKernelTable(rt, e).reduce(op, loadProgram(view), outer, inner, dtype)),
      );
      for (const o of outs) expect(o.every((v, i) => Object.is(v, outs[0][i]))).toBe(true);
    }
  });
});

describe('wasm adamUpdate', () => {
  const hyper = (amsgrad: number): AdamUpdateParams => ({
    decay: amsgrad ? 1 : 1 - 1e-3 * 0.01,
    l2: amsgrad ? 0.01 : 0,
    beta1: 0.9,
    beta2: 0.999,
    stepSize: 1e-3 / (1 - 0.9 ** 3),
    sqrtBc2: Math.sqrt(1 - 0.999 ** 3),
    eps: 1e-8,
  });

  function state(n: number, withMax: boolean): Storage[] {
    const v = randomArray(n).map(Math.abs);
    const arrays = [randomArray(n, true), randomArray(n), randomArray(n), v];
    if (withMax) arrays.push(randomArray(n).map(Math.abs));
    return arrays.map((a) => upload(a));
  }

  it('is bit-identical to the TypeScript kernel (Adam, AdamW, AMSGrad; odd sizes)', () => {
    for (const amsgrad of [0, 1])
      for (const n of [1, 3, 17, 257, 10_001]) {
        const mine = state(n, amsgrad === 1);
        const ref = mine.map((s) => upload((s.handle as Float32Array).slice()));
        const views = (ss: Storage[]) => ss.map((s) => dense(s, [n]));
        const [p, g, m, v, h] = views(mine);
        const [rp, rg, rm, rv, rh] = views(ref);
        for (let step = 0; step < 3; step++) {
          serial.adamUpdate(p, g, m, v, h ?? null, hyper(amsgrad));
          tsAdamUpdate(rp, rg, rm, rv, rh ?? null, hyper(amsgrad));
        }
        mine.forEach((s, i) => {
          const a = values(s);
          const b = values(ref[i]);
          for (let j = 0; j < n; j++)
            if (!Object.is(a[j], b[j])) throw new Error(`n=${n} buffer ${i} at ${j}`);
        });
      }
  });

  it('gives the same bits with 1 and 2 threads', async () => {
    const pool = await WorkerPool.create(rt, 2);
    pools.push(pool);
    const n = 100_001;
    const a = state(n, true);
    const b = a.map((s) => upload((s.handle as Float32Array).slice()));
    const [p, g, m, v, h] = a.map((s) => dense(s, [n]));
    const [bp, bg, bm, bv, bh] = b.map((s) => dense(s, [n]));
    serial.adamUpdate(p, g, m, v, h, hyper(1));
    wasmKernelTable(rt, pool).adamUpdate(bp, bg, bm, bv, bh, hyper(1));
    for (let i = 0; i < a.length; i++) expect(values(a[i])).toEqual(values(b[i]));
  });
});

describe('wasm gather and indexSelect', () => {
  it('gather matches the TypeScript kernel for ranks 1–3, and raises its errors', () => {
    const x3 = dense(upload(randomArray(3 * 5 * 4)), [3, 5, 4]);
    const idx = (shape: number[], bound: number) =>
      dense(
        upload(
          Int32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, () => Math.floor(rand() * bound)),
          'int32',
        ),
        shape,
      );
    const cases: [View, number, View][] = [
      [dense(upload(randomArray(7)), [7]), 0, idx([9], 7)],
      [dense(upload(randomArray(12)), [3, 4]), 1, idx([3, 2], 4)], // cross-entropy's pick
      [dense(upload(randomArray(12)), [3, 4]), 0, idx([2, 4], 3)],
      [x3, 1, idx([2, 6, 3], 5)],
      [x3, 2, idx([3, 5, 2], 4)], // not the middle axis: the TypeScript kernel
      [{ ...x3, shape: [5, 3, 4], strides: [4, 20, 1] }, 1, idx([5, 2, 4], 3)], // strided x
    ];
    for (const [x, dim, index] of cases) {
      expect(values(serial.gather(x, dim, index))).toEqual(values(tsGather(x, dim, index)));
    }
    const bad = dense(upload(new Int32Array([0, 9]), 'int32'), [2]);
    expect(() => serial.gather(cases[0][0], 0, bad)).toThrow(/out of bounds/);
    // a negative index: whatever the TypeScript kernel does (an error), the Wasm one does
    const negative = dense(upload(new Int32Array([-1, 2]), 'int32'), [2]);
    expect(outcome(() => serial.gather(cases[0][0], 0, negative))).toEqual(
      outcome(() => tsGather(cases[0][0], 0, negative)),
    );
  });

  it('indexSelect matches the TypeScript kernel (dims, negative indices, bool), raises its errors', () => {
    const x = dense(upload(randomArray(3 * 4 * 5)), [3, 4, 5]);
    const index = dense(upload(new Int32Array([2, 0, 1, 3]), 'int32'), [4]);
    for (const dim of [0, 1, 2]) {
      const i = dim === 0 ? dense(upload(new Int32Array([2, 0, 1]), 'int32'), [3]) : index;
      expect(values(serial.indexSelect(x, dim, i))).toEqual(values(tsIndexSelect(x, dim, i)));
      const negative = dense(upload(new Int32Array([1, -1]), 'int32'), [2]);
      expect(outcome(() => serial.indexSelect(x, dim, negative))).toEqual(
        outcome(() => tsIndexSelect(x, dim, negative)),
      );
    }
    const b = dense(upload(new Uint8Array([1, 0, 1, 1, 0, 0]), 'bool'), [3, 2]);
    expect(values(serial.indexSelect(b, 0, dense(index.storage, [2], 1)))).toEqual(
      values(tsIndexSelect(b, 0, dense(index.storage, [2], 1))),
    );
    const bad = dense(upload(new Int32Array([7]), 'int32'), [1]);
    expect(() => serial.indexSelect(x, 0, bad)).toThrow(/out of bounds/);
  });
});

it('ran every Wasm kernel above (no silent fallback)', () => {
  const names = ['sum', 'prod', 'max', 'min', 'argmax', 'argmin'].map((op) => `reduce_${op}`);
  expect([...ran].sort()).toEqual([...names, 'adam', 'adam_amsgrad', 'gather32'].sort());
});

describe('wasm elementwise', () => {
  const ew = new WasmElementwise(rt);
  const load = (input: number, dtype: DType = 'float32'): Expr => ({ kind: 'load', input, dtype });
  const op = (name: ScalarOpName, args: Expr[], dtype: DType = 'float32'): Expr => ({
    kind: 'op',
    op: name,
    args,
    dtype,
  });
  const c0: Expr = { kind: 'const', index: 0, dtype: 'float32' };
  const exprs: [string, Expr][] = [
    ['add·mul·const', op('mul', [op('add', [load(0), load(1)]), c0])],
    [
      'div, sqrt, rsqrt, reciprocal',
      op('div', [op('sqrt', [op('abs', [load(0)])]), op('rsqrt', [op('reciprocal', [load(1)])])]),
    ],
    [
      'relu, square, neg, max, min',
      op('maximum', [op('relu', [load(0)]), op('minimum', [op('square', [load(1)]), op('neg', [load(0)])])]),
    ],
    [
      'where(a > b, a, b·c)',
      op('where', [op('gt', [load(0), load(1)], 'bool'), load(0), op('mul', [load(1), c0])]),
    ],
    [
      'bool: (a ≤ b) or not (a = b)',
      op(
        'logicalOr',
        [
          op('le', [load(0), load(1)], 'bool'),
          op('logicalNot', [op('eq', [load(0), load(1)], 'bool')], 'bool'),
        ],
        'bool',
      ),
    ],
    [
      'cast to bool and back',
      {
        kind: 'cast',
        dtype: 'float32',
        arg: { kind: 'cast', dtype: 'bool', arg: op('sub', [load(0), load(1)]) },
      },
    ],
  ];
  // [shape, strides of input 0, strides of input 1] (broadcast, transposed, offset, odd sizes)
  const layouts: [number[], number[], number[]][] = [
    [[257], [1], [1]],
    [
      [3, 17],
      [17, 1],
      [0, 1],
    ],
    [
      [17, 3],
      [1, 17],
      [3, 1],
    ],
    [
      [2, 3, 5],
      [15, 5, 1],
      [0, 5, 0],
    ],
    [
      [2, 1, 3, 5],
      [15, 15, 1, 3],
      [5, 5, 0, 1],
    ], // rank 4 that coalesces to 3
    [[1], [1], [0]],
  ];
  it('is bit-identical to the TypeScript kernel on float32/bool programs, strided and broadcast, with NaN/±Inf/±0', () => {
    for (const [, root] of exprs)
      for (const [shape, s0, s1] of layouts) {
        const inputs: View[] = [s0, s1].map((strides) => {
          const span = 1 + shape.reduce((acc, d, i) => acc + (d - 1) * strides[i], 0);
          return { storage: upload(randomArray(span + 3, true)), shape, strides, offset: 3 };
        });
        const program: ElementwiseProgram = { root, inputs, consts: [0.1], shape };
        const got = ew.run(program);
        expect(got).not.toBe(null);
        const want = tsElementwise(program);
        const a = values(got!);
        const b = values(want);
        for (let i = 0; i < b.length; i++)
          if (!Object.is(a[i], b[i])) throw new Error(`${shape}: ${a[i]} vs ${b[i]} at ${i}`);
        // into a strided destination
        const dst: View = {
          storage: upload(new Float32Array(2 * b.length + 1)),
          shape,
          strides: contiguousStrides(shape).map((x) => 2 * x),
          offset: 1,
        };
        if (root.dtype === 'float32') {
          ew.run(program, dst);
          const d = values(dst.storage);
          for (let i = 0; i < b.length; i++) expect(Object.is(d[1 + 2 * i], b[i])).toBe(true);
        }
      }
  });

  it('int32 programs match the TypeScript kernel bit for bit (wrapping, casts, masks)', () => {
    const n = 257;
    const ints = Int32Array.from({ length: n }, (_, i) =>
      i < 6 ? [2147483647, -2147483648, 0, -1, 1, 2147483000][i] : Math.floor((rand() - 0.5) * 2 ** 32),
    );
    const floats = randomArray(n, true).map((x, i) => (i % 7 === 0 ? x * 3e9 : x * 40));
    const iv = dense(upload(ints, 'int32'), [n]);
    const fv = dense(upload(floats), [n]);
    const li = load(0, 'int32');
    const ci: Expr = { kind: 'const', index: 0, dtype: 'int32' };
    const toInt: Expr = { kind: 'cast', dtype: 'int32', arg: load(1) };
    const programs: Expr[] = [
      op('add', [li, ci], 'int32'), // wraps past 2^31
      op('sub', [op('neg', [li], 'int32'), op('abs', [li], 'int32')], 'int32'),
      op('maximum', [li, toInt], 'int32'), // float → int truncates, wraps, NaN/Inf → 0
      { kind: 'cast', dtype: 'float32', arg: op('sub', [li, toInt], 'int32') }, // rounds to float32
      op('where', [op('le', [op('sub', [li, ci], 'int32'), ci], 'bool'), load(1), c0f()], 'float32'),
      op('sign', [li], 'int32'),
    ];
    function c0f(): Expr {
      return { kind: 'const', index: 1, dtype: 'float32' };
    }
    for (const root of programs) {
      const program = { root, inputs: [iv, fv], consts: [1000, -1e9], shape: [n] };
      const got = ew.run(program);
      expect(got).not.toBe(null);
      expect(Array.from(got!.handle as TypedArray)).toEqual(
        Array.from(tsElementwise(program).handle as TypedArray),
      );
    }
  });

  it('declines unsupported ops and a destination the program reads', () => {
    const v = dense(upload(randomArray(4)), [4]);
    const iv = dense(upload(new Int32Array(4), 'int32'), [4]);
    expect(ew.run({ root: op('sin', [load(0)]), inputs: [v], consts: [], shape: [4] })).toBe(null);
    const imul = op('mul', [load(0, 'int32'), load(0, 'int32')], 'int32');
    expect(ew.run({ root: imul, inputs: [iv], consts: [], shape: [4] })).toBe(null);
    expect(ew.run({ root: op('neg', [load(0)]), inputs: [v], consts: [], shape: [4] }, v)).toBe(null);
  });
});
