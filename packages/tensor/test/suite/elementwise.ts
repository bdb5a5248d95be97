import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DType, Tensor } from '../../src/index.js';
import * as lr from '../../src/index.js';
import {
  arbBroadcastShapes,
  arbInput,
  arbInputOf,
  assertClose,
  Bag,
  EXACT,
  f32,
  type Kind,
  read,
  type Tol,
} from './gen.js';
import type { SuiteContext, Tolerances } from './index.js';
import { at, broadcastShape, build, erf, map, type Ref, roundHalfEven, toInt, zip } from './reference.js';

interface UnaryCase {
  name: string;
  run: (x: Tensor) => Tensor;
  ref: (x: number) => number;
  kind: Kind;
  tol: (t: Tolerances) => Tol;
}

const exact = () => EXACT;
const ew = (t: Tolerances) => t.elementwise;
const UNARY: UnaryCase[] = [
  { name: 'neg', run: (x) => x.neg(), ref: (x) => -x, kind: 'float', tol: exact },
  { name: 'abs', run: (x) => x.abs(), ref: Math.abs, kind: 'float', tol: exact },
  // biome-ignore lint/complexity/useMathMinMax: the reference spells the definition out on purpose
  { name: 'relu', run: (x) => x.relu(), ref: (x) => (x > 0 ? x : 0), kind: 'float', tol: exact },
  { name: 'square', run: (x) => x.square(), ref: (x) => x * x, kind: 'float', tol: exact },
  { name: 'sign', run: (x) => x.sign(), ref: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0), kind: 'float', tol: exact },
  { name: 'floor', run: (x) => x.floor(), ref: Math.floor, kind: 'float', tol: exact },
  { name: 'ceil', run: (x) => x.ceil(), ref: Math.ceil, kind: 'float', tol: exact },
  { name: 'round', run: (x) => x.round(), ref: roundHalfEven, kind: 'float', tol: exact },
  { name: 'exp', run: (x) => x.exp(), ref: Math.exp, kind: 'float', tol: ew },
  { name: 'log', run: (x) => x.log(), ref: Math.log, kind: 'positive', tol: ew },
  { name: 'sqrt', run: (x) => x.sqrt(), ref: Math.sqrt, kind: 'positive', tol: ew },
  { name: 'rsqrt', run: (x) => x.rsqrt(), ref: (x) => 1 / Math.sqrt(x), kind: 'positive', tol: ew },
  { name: 'reciprocal', run: (x) => x.reciprocal(), ref: (x) => 1 / x, kind: 'positive', tol: ew },
  { name: 'tanh', run: (x) => x.tanh(), ref: Math.tanh, kind: 'float', tol: ew },
  { name: 'sigmoid', run: (x) => x.sigmoid(), ref: (x) => 1 / (1 + Math.exp(-x)), kind: 'float', tol: ew },
  { name: 'silu', run: (x) => x.silu(), ref: (x) => x / (1 + Math.exp(-x)), kind: 'float', tol: ew },
  { name: 'sin', run: (x) => x.sin(), ref: Math.sin, kind: 'float', tol: ew },
  { name: 'cos', run: (x) => x.cos(), ref: Math.cos, kind: 'float', tol: ew },
  {
    name: 'gelu (tanh)',
    run: (x) => x.gelu({ approximate: 'tanh' }),
    ref: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    kind: 'float',
    tol: (t) => t.gelu,
  },
  {
    name: 'gelu (erf)',
    run: (x) => x.gelu(),
    ref: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    kind: 'float',
    tol: (t) => t.gelu,
  },
];

interface BinaryCase {
  name: string;
  run: (a: Tensor, b: Tensor) => Tensor;
  ref: (a: number, b: number) => number;
  kinds: [Kind, Kind];
  tol: (t: Tolerances) => Tol;
  out: DType;
}

const BINARY: BinaryCase[] = [
  { name: 'add', run: lr.add, ref: (a, b) => a + b, kinds: ['float', 'float'], tol: exact, out: 'float32' },
  { name: 'sub', run: lr.sub, ref: (a, b) => a - b, kinds: ['float', 'float'], tol: exact, out: 'float32' },
  { name: 'mul', run: lr.mul, ref: (a, b) => a * b, kinds: ['float', 'float'], tol: exact, out: 'float32' },
  { name: 'div', run: lr.div, ref: (a, b) => a / b, kinds: ['float', 'positive'], tol: ew, out: 'float32' },
  { name: 'pow', run: lr.pow, ref: (a, b) => a ** b, kinds: ['positive', 'float'], tol: ew, out: 'float32' },
  { name: 'maximum', run: lr.maximum, ref: Math.max, kinds: ['float', 'float'], tol: exact, out: 'float32' },
  { name: 'minimum', run: lr.minimum, ref: Math.min, kinds: ['float', 'float'], tol: exact, out: 'float32' },
  { name: 'add int32', run: lr.add, ref: (a, b) => a + b, kinds: ['int', 'int'], tol: exact, out: 'int32' },
  { name: 'mul int32', run: lr.mul, ref: (a, b) => a * b, kinds: ['int', 'int'], tol: exact, out: 'int32' },
  { name: 'sub int32', run: lr.sub, ref: (a, b) => a - b, kinds: ['int', 'int'], tol: exact, out: 'int32' },
  {
    name: 'div int32 (true division)',
    run: lr.div,
    ref: (a, b) => a / b,
    kinds: ['int', 'int'],
    tol: ew,
    out: 'float32',
  },
  {
    name: 'add int32+float32',
    run: lr.add,
    ref: (a, b) => a + b,
    kinds: ['int', 'float'],
    tol: exact,
    out: 'float32',
  },
  {
    name: 'add bool+bool',
    run: lr.add,
    ref: (a, b) => a + b,
    kinds: ['bool', 'bool'],
    tol: exact,
    out: 'int32',
  },
  { name: 'eq', run: lr.eq, ref: (a, b) => +(a === b), kinds: ['float', 'float'], tol: exact, out: 'bool' },
  { name: 'ne', run: lr.ne, ref: (a, b) => +(a !== b), kinds: ['float', 'float'], tol: exact, out: 'bool' },
  { name: 'lt', run: lr.lt, ref: (a, b) => +(a < b), kinds: ['float', 'float'], tol: exact, out: 'bool' },
  { name: 'le', run: lr.le, ref: (a, b) => +(a <= b), kinds: ['int', 'int'], tol: exact, out: 'bool' },
  { name: 'gt', run: lr.gt, ref: (a, b) => +(a > b), kinds: ['float', 'int'], tol: exact, out: 'bool' },
  { name: 'ge', run: lr.ge, ref: (a, b) => +(a >= b), kinds: ['float', 'float'], tol: exact, out: 'bool' },
  {
    name: 'logicalAnd',
    run: lr.logicalAnd,
    ref: (a, b) => +(a && b),
    kinds: ['bool', 'bool'],
    tol: exact,
    out: 'bool',
  },
  {
    name: 'logicalOr',
    run: lr.logicalOr,
    ref: (a, b) => +(a || b),
    kinds: ['bool', 'bool'],
    tol: exact,
    out: 'bool',
  },
];

/** What a float32 result holds: the reference rounded to float32 (int/bool results are exact). */
function asDtype(r: Ref, dtype: DType): Ref {
  return dtype === 'float32' ? f32(r) : r;
}

export function elementwiseSuite({ device, tol, numRuns }: SuiteContext): void {
  describe('elementwise', () => {
    it('every op of the table has a reference case here (no op goes untested)', () => {
      const named = new Set([...UNARY, ...BINARY].map((c) => c.name));
      const alias: Record<string, string> = { geluTanh: 'gelu (tanh)', geluErf: 'gelu (erf)' };
      // logicalNot is checked on bool and float inputs below; the rest by name
      const missing = [...lr.UNARY_OPS, ...lr.BINARY_OPS].filter(
        (op) => op !== 'logicalNot' && !named.has(alias[op] ?? op),
      );
      expect(missing).toEqual([]);
    });

    for (const c of UNARY) {
      it(`${c.name} matches the reference on any layout`, async () => {
        await fc.assert(
          fc.asyncProperty(arbInput(c.kind), async (inp) => {
            const bag = new Bag();
            try {
              const out = bag.add(c.run(bag.add(inp.make(device))));
              expect(out.dtype).toBe('float32');
              assertClose(await read(out), f32(map(inp.ref, c.ref)), c.tol(tol), `${c.name} (${inp.layout})`);
            } finally {
              bag.dispose();
            }
          }),
          { numRuns: Math.ceil(numRuns / 2) },
        );
      });
    }

    it('unary ops on int32: neg/abs/square stay int32, exp/sqrt/sigmoid give float32; bool is refused', async () => {
      const bag = new Bag();
      try {
        const x = bag.add(lr.tensor([-3, 0, 2], { dtype: 'int32', device }));
        const n = bag.add(x.neg());
        expect(n.dtype).toBe('int32');
        expect(Array.from(await n.data())).toEqual([3, 0, -2]);
        expect(Array.from(await bag.add(x.abs()).data())).toEqual([3, 0, 2]);
        const e = bag.add(x.exp());
        expect(e.dtype).toBe('float32');
        assertClose(await read(e), f32({ shape: [3], data: [-3, 0, 2].map(Math.exp) }), tol.elementwise);
        const b = bag.add(lr.tensor([true, false], { device }));
        expect(() => b.neg()).toThrow(/^neg: expected a float32 or int32 tensor, got bool/);
        expect(await bag.add(b.logicalNot()).toArray()).toEqual([false, true]);
      } finally {
        bag.dispose();
      }
    });

    for (const c of BINARY) {
      it(`${c.name} broadcasts like NumPy over any layouts`, async () => {
        await fc.assert(
          fc.asyncProperty(
            arbBroadcastShapes().chain(([sa, sb]) =>
              fc.tuple(arbInputOf(fc.constant(sa), c.kinds[0]), arbInputOf(fc.constant(sb), c.kinds[1])),
            ),
            fc.boolean(),
            async ([ia, ib], swap) => {
              const bag = new Bag();
              try {
                const [x, y] = swap ? [ib, ia] : [ia, ib];
                const refFn = swap ? (p: number, q: number) => c.ref(q, p) : c.ref;
                const run = swap ? (p: Tensor, q: Tensor) => c.run(q, p) : c.run;
                const out = bag.add(run(bag.add(x.make(device)), bag.add(y.make(device))));
                expect(out.dtype).toBe(c.out);
                const want = asDtype(zip(x.ref, y.ref, refFn), c.out);
                assertClose(await read(out), want, c.tol(tol), `${c.name} ${x.layout}/${y.layout}`);
              } finally {
                bag.dispose();
              }
            },
          ),
          { numRuns: Math.ceil(numRuns / 2) },
        );
      });
    }

    it('scalar operands are weak: int32 ⊕ 2 stays int32, int32 ⊕ 0.5 and bool ⊕ 1.5 give float32', async () => {
      const bag = new Bag();
      try {
        const i = bag.add(lr.tensor([1, 2, 3], { dtype: 'int32', device }));
        const a = bag.add(i.add(2));
        expect(a.dtype).toBe('int32');
        expect(Array.from(await a.data())).toEqual([3, 4, 5]);
        const h = bag.add(i.mul(0.5));
        expect(h.dtype).toBe('float32');
        expect(Array.from(await h.data())).toEqual([0.5, 1, 1.5]);
        const f = bag.add(bag.add(lr.tensor([1, 2], { device })).add(1));
        expect(f.dtype).toBe('float32');
        const bl = bag.add(lr.tensor([true, false], { device }));
        expect(bag.add(bl.add(1.5)).dtype).toBe('float32');
        expect(bag.add(lr.sub(10, i)).dtype).toBe('int32');
        expect(Array.from(await bag.add(lr.sub(10, i)).data())).toEqual([9, 8, 7]);
      } finally {
        bag.dispose();
      }
    });

    it('where(cond, a, b) broadcasts all three operands', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbBroadcastShapes(3, 3).chain(([sa, sb]) =>
            fc.tuple(
              arbInputOf(fc.constant(sa), 'bool'),
              arbInputOf(fc.constant(sb), 'float'),
              arbInputOf(fc.constant(sa.slice(1)), 'float'),
            ),
          ),
          async ([ic, ia, ib]) => {
            const bag = new Bag();
            try {
              const out = bag.add(
                lr.where(bag.add(ic.make(device)), bag.add(ia.make(device)), bag.add(ib.make(device))),
              );
              const shape =
                broadcastShape(broadcastShape(ic.ref.shape, ia.ref.shape) ?? [], ib.ref.shape) ?? [];
              const want = build(shape, (idx) => (at(ic.ref, idx) ? at(ia.ref, idx) : at(ib.ref, idx)));
              assertClose(await read(out), want, EXACT, 'where');
              // scalar branches, and the method form x.where(cond, other)
              const s = bag.add(lr.where(bag.add(ic.make(device)), 1, -1));
              assertClose(
                await read(s),
                map(ic.ref, (c) => (c ? 1 : -1)),
                EXACT,
                'where scalars',
              );
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('rotateHalf is [−x₂, x₁] over the last dim, of real, lazy and permuted inputs; odd dims are refused', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 2 }),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 0, max: 1000 }),
          async (lead, half, seed) => {
            const bag = new Bag();
            try {
              const shape = [...lead, 2 * half];
              const n = shape.reduce((a, b) => a * b, 1);
              const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + seed));
              const want = new Float32Array(n);
              for (let r = 0; r < n / (2 * half); r++) {
                for (let i = 0; i < half; i++) {
                  want[r * 2 * half + i] = -data[r * 2 * half + half + i];
                  want[r * 2 * half + half + i] = data[r * 2 * half + i];
                }
              }
              const x = bag.add(lr.tensor(data, { shape, device }));
              const ref = { shape, data: Array.from(want) };
              assertClose(await read(bag.add(lr.rotateHalf(x))), ref, EXACT, 'real');
              // a lazy chain under it: its view is composed backwards, or the chain is computed
              const lazy = bag.add(lr.tidy(() => lr.rotateHalf(x.mul(2)).mul(0.5)));
              assertClose(await read(lazy), ref, EXACT, 'lazy');
              if (shape.length >= 2) {
                // rotate a permuted view, then permute back: the same values
                const t = bag.add(
                  lr.tidy(() =>
                    lr.rotateHalf(
                      x
                        .transpose(0, shape.length - 1)
                        .contiguous()
                        .transpose(0, shape.length - 1),
                    ),
                  ),
                );
                assertClose(await read(t), ref, EXACT, 'strided');
              }
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
      const bag = new Bag();
      try {
        const odd = bag.add(lr.zeros([2, 3], { device }));
        expect(() => lr.rotateHalf(odd)).toThrow(
          /rotateHalf: dim 1 must have an even size, got shape \[2,3\]/,
        );
        const ints = bag.add(lr.zeros([3, 2], { device, dtype: 'int32' }));
        expect(() => lr.rotateHalf(ints)).toThrow(/rotateHalf: expected a float32 tensor, got int32/);
      } finally {
        bag.dispose();
      }
    });

    it('clamp limits to [min, max] with either bound optional', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbInput('float'),
          fc.double({ min: -3, max: 0, noNaN: true }),
          fc.double({ min: 0, max: 3, noNaN: true }),
          async (inp, lo, hi) => {
            const bag = new Bag();
            try {
              const x = bag.add(inp.make(device));
              const lof = Math.fround(lo);
              const hif = Math.fround(hi);
              assertClose(
                await read(bag.add(x.clamp(lof, hif))),
                map(inp.ref, (v) => Math.min(Math.max(v, lof), hif)),
                EXACT,
                'clamp',
              );
              assertClose(
                await read(bag.add(x.clamp(lof))),
                map(inp.ref, (v) => Math.max(v, lof)),
                EXACT,
                'clamp min',
              );
              assertClose(
                await read(bag.add(x.clamp(null, hif))),
                map(inp.ref, (v) => Math.min(v, hif)),
                EXACT,
                'clamp max',
              );
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('cast between every pair of dtypes (float→int truncates toward zero, →bool is != 0)', async () => {
      const kinds: Kind[] = ['float', 'int', 'bool'];
      const dtypes: DType[] = ['float32', 'int32', 'bool'];
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...kinds).chain((k) => arbInput(k)),
          fc.constantFrom(...dtypes),
          async (inp, to) => {
            const bag = new Bag();
            try {
              const x = bag.add(inp.make(device));
              const y = x.cast(to);
              if (y !== x) bag.add(y);
              expect(y.dtype).toBe(to);
              const conv =
                to === 'bool' ? (v: number) => +(v !== 0) : to === 'int32' ? toInt : (v: number) => v;
              assertClose(await read(y), map(inp.ref, conv), EXACT, `cast ${inp.dtype}→${to}`);
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
      const bag = new Bag();
      try {
        const special = bag.add(
          lr.tensor([2.7, -2.7, Number.NaN, Number.POSITIVE_INFINITY, -0.5], { device }),
        );
        expect(Array.from(await bag.add(special.int()).data())).toEqual([2, -2, 0, 0, 0]);
        expect(await bag.add(special.bool()).toArray()).toEqual([true, true, true, true, true]);
      } finally {
        bag.dispose();
      }
    });

    it('elementwise errors name the op and the shapes', () => {
      const bag = new Bag();
      try {
        const a = bag.add(lr.zeros([2, 3], { device }));
        const b = bag.add(lr.zeros([4], { device }));
        expect(() => lr.add(a, b)).toThrow(/^add: shapes \[2,3\] and \[4\] cannot be broadcast together/);
        expect(() => lr.where(a, a, a)).toThrow(/^where: condition must be a bool tensor, got float32/);
        expect(() => a.clamp(2, 1)).toThrow(/^clamp: min 2 is greater than max 1/);
        expect(() => a.gelu({ approximate: 'erf' as 'none' })).toThrow(/^gelu: approximate must be/);
      } finally {
        bag.dispose();
      }
    });
  });
}
