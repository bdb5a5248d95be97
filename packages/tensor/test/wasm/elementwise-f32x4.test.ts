import { describe, expect, it } from 'vitest';
import { evaluateProgram } from '../../src/backends/cpu/elementwise.js';
import { useF32x4Elementwise, WasmElementwise } from '../../src/backends/wasm/elementwise.js';
import { f32x4Supports } from '../../src/backends/wasm/elementwise-f32x4.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import type { DType } from '../../src/dtype.js';
import type { ElementwiseProgram } from '../../src/expr/program.js';
import type { ScalarOpName } from '../../src/expr/table.js';
import { contiguousStrides } from '../../src/shape.js';
import type { View } from '../../src/storage.js';
import '../../src/index.js';
import { constOf as c, loadOf as load, opOf as op } from '../../src/expr/build.js';

/**
 * The f32x4 elementwise compiler (float32/bool programs, four elements a turn) against the
 * TypeScript interpreter and the f64x2 compiler, bit for bit: every op it takes, over sizes 1, 3,
 * 17, 257 (the 0–3 element tail), strided and broadcast inputs, bool inputs and outputs, NaN,
 * ±Inf, −0 and subnormals, and tanh-GELU's backward as the fusion builder emits it.
 */
const rt = new WasmRuntime();
const ew = new WasmElementwise(rt);

let seed = 17;
function values(n: number, dtype: DType): Float32Array | Uint8Array {
  const specials = [Number.NaN, Infinity, -Infinity, -0, 0, 1e-40, -3e-39, 1];
  const next = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  if (dtype === 'bool') return Uint8Array.from({ length: n }, () => (next() < 0.5 ? 1 : 0));
  return Float32Array.from({ length: n }, () => {
    const u = next();
    return u < 0.08 ? specials[Math.floor(u * 100)] : (next() - 0.5) * 12;
  });
}
/** A view of `shape` over fresh data; `layout` 'strided' reads every other element, 'broadcast' a row. */
function view(
  shape: number[],
  dtype: DType = 'float32',
  layout: 'plain' | 'strided' | 'broadcast' = 'plain',
): View {
  const n = shape.reduce((a, b) => a * b, 1);
  if (layout === 'broadcast') {
    const row = shape[shape.length - 1];
    const storage = rt.storages.upload(values(row, dtype), dtype);
    return { storage, shape, strides: [...shape.slice(0, -1).map(() => 0), 1], offset: 0 };
  }
  const factor = layout === 'strided' ? 2 : 1;
  const storage = rt.storages.upload(values(n * factor + 1, dtype), dtype);
  return {
    storage,
    shape,
    strides: contiguousStrides(shape).map((s) => s * factor),
    offset: layout === 'strided' ? 1 : 0,
  };
}
const bits = (a: ArrayLike<number>, dtype: DType): number[] =>
  dtype === 'bool' ? Array.from(a) : Array.from(new Uint32Array(Float32Array.from(a).buffer));
/** The f32x4 kernel's, the f64x2 kernel's and the TypeScript interpreter's bits of `p`. */
function three(p: ElementwiseProgram): [number[], number[], number[]] {
  expect(f32x4Supports(p)).toBe(true);
  const d = p.root.dtype;
  const run = () => {
    const out = ew.run(p);
    if (!out) throw new Error('the Wasm compiler refused the program');
    return bits(out.handle as ArrayLike<number>, d);
  };
  const four = run();
  useF32x4Elementwise(false);
  try {
    return [four, run(), bits(evaluateProgram(p), d)];
  } finally {
    useF32x4Elementwise(true);
  }
}
/** NaN's sign and payload are not specified (by Wasm or by Math): compare NaNs as NaN. */
const canon = (b: number[]) =>
  b.map((x) => ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0 ? -1 : x));

const TRANSCENDENTAL = new Set(['exp', 'tanh', 'geluTanh', 'sigmoid']);

describe('the f32x4 elementwise compiler', () => {
  const unary: ScalarOpName[] = [
    'neg',
    'abs',
    'sqrt',
    'floor',
    'ceil',
    'round',
    'relu',
    'square',
    'reciprocal',
    'rsqrt',
    'exp',
    'tanh',
    'geluTanh',
    'sigmoid',
    'sign',
    'logicalNot',
  ];
  const binary: ScalarOpName[] = [
    'add',
    'sub',
    'mul',
    'div',
    'maximum',
    'minimum',
    'eq',
    'ne',
    'lt',
    'le',
    'gt',
    'ge',
    'logicalAnd',
    'logicalOr',
  ];
  for (const n of [1, 3, 17, 257]) {
    it(`every op it takes over ${n} elements equals the TypeScript kernel and the f64x2 compiler bit for bit`, () => {
      for (const name of unary) {
        const [four, two, ts] = three({
          root: op(name, load(0)),
          inputs: [view([n])],
          consts: [],
          shape: [n],
        });
        expect(canon(four), name).toEqual(canon(two));
        // math.ts's transcendentals are ≤ 1 ulp from Math.*, rarely (test/wasm/math.test.ts); the rest exact
        if (TRANSCENDENTAL.has(name)) {
          const off = canon(four).filter((b, i) => b !== canon(ts)[i]).length;
          expect(off, name).toBeLessThanOrEqual(1);
        } else expect(canon(four), name).toEqual(canon(ts));
      }
      for (const name of binary) {
        const inputs = [view([n]), view([n])];
        const [four, two, ts] = three({ root: op(name, load(0), load(1)), inputs, consts: [], shape: [n] });
        expect(canon(four), name).toEqual(canon(ts));
        expect(canon(four), name).toEqual(canon(two));
      }
      // where over a bool input, casts both ways, a constant
      const where: ElementwiseProgram = {
        root: {
          kind: 'op',
          op: 'where',
          args: [
            load(0, 'bool'),
            op('mul', load(1), c(0)),
            { kind: 'cast', arg: op('gt', load(1), c(1)), dtype: 'float32' },
          ],
          dtype: 'float32',
        },
        inputs: [view([n], 'bool'), view([n])],
        consts: [Math.fround(1.1), 0],
        shape: [n],
      };
      const [w4, w2, wts] = three(where);
      expect(canon(w4)).toEqual(canon(wts));
      expect(canon(w4)).toEqual(canon(w2));
    });
  }

  it('strided and broadcast operands, a bool output, and a strided destination-free 3-D layout', () => {
    const shape = [3, 5, 19];
    const p: ElementwiseProgram = {
      root: op('add', op('mul', load(0), load(1)), op('tanh', load(2))),
      inputs: [view(shape, 'float32', 'strided'), view(shape, 'float32', 'broadcast'), view(shape)],
      consts: [],
      shape,
    };
    const [four, two, ts] = three(p);
    expect(canon(four)).toEqual(canon(ts));
    expect(canon(four)).toEqual(canon(two));
    const cmp: ElementwiseProgram = {
      root: op('logicalOr', op('lt', load(0), load(1)), load(2, 'bool')),
      inputs: [view(shape, 'float32', 'strided'), view(shape), view(shape, 'bool', 'broadcast')],
      consts: [],
      shape,
    };
    const [b4, b2, bts] = three(cmp);
    expect(b4).toEqual(bts);
    expect(b4).toEqual(b2);
  });

  it("tanh-GELU's backward as the fusion builder writes it (each tanh with its own constants)", () => {
    const n = 1031;
    const k = Math.fround(Math.sqrt(2 / Math.PI));
    const a = Math.fround(0.044715);
    const x = () => load(2);
    const t = (ca: number, ck: number) =>
      op('tanh', op('mul', op('add', x(), op('mul', op('mul', op('square', x()), x()), c(ca))), c(ck)));
    const root = op(
      'mul',
      op('add', load(0), load(1)),
      op(
        'add',
        op('mul', op('add', t(0, 1), c(2)), c(3)),
        op(
          'mul',
          op('mul', op('mul', x(), c(4)), op('sub', c(5), op('square', t(6, 7)))),
          op('mul', op('add', op('mul', op('square', x()), c(8)), c(9)), c(10)),
        ),
      ),
    );
    const consts = [a, k, 1, 0.5, 0.5, 1, a, k, Math.fround(3 * a), 1, k];
    const [four, two, ts] = three({ root, inputs: [view([n]), view([n]), view([n])], consts, shape: [n] });
    expect(canon(four)).toEqual(canon(two));
    // the transcendental step is math.ts's tanh: ≤ 1 ulp from Math.tanh, rarely; the rest is exact
    const off = canon(four).filter((b, i) => b !== canon(ts)[i]).length;
    expect(off).toBeLessThanOrEqual(3);
  });

  it('refuses int32 values and random leaves (the f64x2 compiler takes them)', () => {
    const ints: ElementwiseProgram = {
      root: op('add', load(0, 'int32'), load(0, 'int32')),
      inputs: [view([4])],
      consts: [],
      shape: [4],
    };
    expect(f32x4Supports(ints)).toBe(false);
    const rand: ElementwiseProgram = {
      root: { kind: 'random', index: 0, dist: 'uniform', dtype: 'float32' },
      inputs: [],
      consts: [],
      shape: [4],
      rng: [{ key: { key0: 1, key1: 2 }, strides: [1], offset: 0 }],
    };
    expect(f32x4Supports(rand)).toBe(false);
  });
});
