import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { arbShape, assertClose, Bag, EXACT, read } from './gen.js';
import type { SuiteContext } from './index.js';
import { build, numel } from './reference.js';

function moments(xs: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  const mean = s / xs.length;
  let v = 0;
  for (let i = 0; i < xs.length; i++) v += (xs[i] - mean) ** 2;
  return { mean, variance: v / (xs.length - 1) };
}

export function creationSuite({ device, numRuns }: SuiteContext): void {
  describe('creation and dtypes', () => {
    it('tensor() round-trips nested arrays of every dtype (bool reads back as booleans)', async () => {
      const bag = new Bag();
      try {
        const f = bag.add(
          lr.tensor(
            [
              [1.5, -2],
              [3, 4],
            ],
            { device },
          ),
        );
        expect(f.dtype).toBe('float32');
        expect(f.shape).toEqual([2, 2]);
        expect(await f.toArray()).toEqual([
          [1.5, -2],
          [3, 4],
        ]);
        expect(await f.data()).toBeInstanceOf(Float32Array);
        const i = bag.add(lr.tensor([[1.9, -2.9]], { dtype: 'int32', device }));
        expect(i.dtype).toBe('int32');
        expect(await i.toArray()).toEqual([[1, -2]]);
        expect(await i.data()).toBeInstanceOf(Int32Array);
        const b = bag.add(lr.tensor([true, false, true], { device }));
        expect(b.dtype).toBe('bool');
        expect(await b.toArray()).toEqual([true, false, true]);
        const bd = await b.data();
        expect(bd).toBeInstanceOf(Uint8Array);
        expect(Array.from(bd)).toEqual([1, 0, 1]);
        const s = bag.add(lr.tensor(7, { device }));
        expect(s.shape).toEqual([]);
        expect(await s.item()).toBe(7);
        const t = bag.add(lr.tensor(new Int32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3], device }));
        expect(t.dtype).toBe('int32');
        expect(await t.toArray()).toEqual([
          [1, 2, 3],
          [4, 5, 6],
        ]);
        const e = bag.add(lr.tensor([], { device }));
        expect(e.shape).toEqual([0]);
        expect(await e.toArray()).toEqual([]);
        expect(() => lr.tensor([[1, 2], [3]], { device })).toThrow(/^tensor: ragged nested array/);
        expect(() => lr.tensor(new Float32Array(3), { shape: [2, 2], device })).toThrow(
          /^tensor: shape \[2,2\] needs 4 values, got 3/,
        );
      } finally {
        bag.dispose();
      }
    });

    it('zeros/ones/full of random shapes and dtypes', async () => {
      await fc.assert(
        fc.asyncProperty(arbShape(), fc.constantFrom('float32', 'int32', 'bool'), async (shape, dtype) => {
          const bag = new Bag();
          try {
            const z = bag.add(lr.zeros(shape, { dtype, device }));
            const o = bag.add(lr.ones(shape, { dtype, device }));
            const v = dtype === 'float32' ? -2.5 : dtype === 'int32' ? 7 : 1;
            const f = bag.add(lr.full(shape, v, { dtype, device }));
            for (const [t, want] of [
              [z, 0],
              [o, 1],
              [f, v],
            ] as const) {
              expect(t.dtype).toBe(dtype);
              assertClose(
                await read(t),
                build(shape, () => want),
                EXACT,
                'fill',
              );
            }
          } finally {
            bag.dispose();
          }
        }),
        { numRuns },
      );
    });

    it('arange (int and float, negative steps) and eye', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: -6, max: 6 }),
          fc.integer({ min: -6, max: 6 }),
          fc.constantFrom(1, 2, 3, -1, -2, 0.5, -0.75),
          async (start, end, step) => {
            const bag = new Bag();
            try {
              const a = bag.add(lr.arange(start, end, step, { device }));
              const want: number[] = [];
              for (let x = start; step > 0 ? x < end : x > end; x += step) want.push(x);
              expect(a.dtype).toBe(Number.isInteger(step) ? 'int32' : 'float32');
              assertClose(await read(a), { shape: [want.length], data: want }, EXACT, 'arange');
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
      const bag = new Bag();
      try {
        expect(Array.from(await bag.add(lr.arange(4, undefined, 1, { device })).data())).toEqual([
          0, 1, 2, 3,
        ]);
        for (const [n, m] of [
          [3, 3],
          [2, 4],
          [4, 1],
          [0, 2],
        ]) {
          const e = bag.add(lr.eye(n, m, { device }));
          assertClose(
            await read(e),
            build([n, m], ([i, j]) => (i === j ? 1 : 0)),
            EXACT,
            'eye',
          );
        }
        expect(() => lr.arange(0, 3, 0)).toThrow(/^arange: step must be finite and non-zero/);
      } finally {
        bag.dispose();
      }
    });

    it('rand/randn/randint: same seed → same values, explicit generators, sane moments', async () => {
      const bag = new Bag();
      try {
        const n = 4096;
        lr.manualSeed(123);
        const r1 = await bag.add(lr.rand([n], { device })).data();
        lr.manualSeed(123);
        const r2 = await bag.add(lr.rand([n], { device })).data();
        expect(Array.from(r1)).toEqual(Array.from(r2));
        const g1 = new lr.Generator(5);
        const g2 = new lr.Generator(5);
        const n1 = await bag.add(lr.randn([64, 64], { generator: g1, device })).data();
        const n2 = await bag.add(lr.randn([64, 64], { generator: g2, device })).data();
        expect(Array.from(n1)).toEqual(Array.from(n2));
        const n3 = await bag.add(lr.randn([64, 64], { generator: new lr.Generator(6), device })).data();
        expect(Array.from(n3)).not.toEqual(Array.from(n1));
        const i1 = await bag.add(lr.randint(-3, 5, [n], { generator: new lr.Generator(9), device })).data();
        const i2 = await bag.add(lr.randint(-3, 5, [n], { generator: new lr.Generator(9), device })).data();
        expect(Array.from(i1)).toEqual(Array.from(i2));

        // U[0,1): mean 1/2, variance 1/12; N(0,1): mean 0, variance 1 (4096 samples: ±5 standard errors)
        expect(Math.min(...r1)).toBeGreaterThanOrEqual(0);
        expect(Math.max(...r1)).toBeLessThan(1);
        const mu = moments(r1);
        expect(Math.abs(mu.mean - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / n));
        expect(Math.abs(mu.variance - 1 / 12)).toBeLessThan(0.01);
        const mn = moments(n1);
        expect(Math.abs(mn.mean)).toBeLessThan(5 / Math.sqrt(n));
        expect(Math.abs(mn.variance - 1)).toBeLessThan(0.12);
        const shifted = await bag.add(lr.randn([n], { mean: 3, std: 0.5, device })).data();
        const ms = moments(shifted);
        expect(Math.abs(ms.mean - 3)).toBeLessThan(0.05);
        expect(Math.abs(Math.sqrt(ms.variance) - 0.5)).toBeLessThan(0.05);
        // randint: every value in [low, high), each about equally often
        const counts = new Map<number, number>();
        for (const v of i1) counts.set(v, (counts.get(v) ?? 0) + 1);
        expect([...counts.keys()].sort((a, b) => a - b)).toEqual([-3, -2, -1, 0, 1, 2, 3, 4]);
        for (const c of counts.values()) expect(Math.abs(c - n / 8)).toBeLessThan(5 * Math.sqrt(n / 8));
        expect(bag.add(lr.randint(0, 2, [3], { device })).dtype).toBe('int32');
        expect(() => lr.randint(3, 3, [2])).toThrow(/^randint: expected integers low < high/);
        expect(() => lr.rand([2], { dtype: 'int32' })).toThrow(/^rand: dtype must be float32, got int32/);
        expect(numel(bag.add(lr.rand([0, 3], { device })).shape)).toBe(0);
      } finally {
        bag.dispose();
      }
    });
  });
}
