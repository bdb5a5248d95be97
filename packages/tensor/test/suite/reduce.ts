import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { arbInput, arbInputOf, arbShape, assertClose, Bag, EXACT, f32, type Input, read } from './gen.js';
import type { SuiteContext } from './index.js';
import { map, refArgMax, refLogSumExp, refMax, refSoftmax, refSum, refVar, zip } from './reference.js';

/** An input plus a non-empty random subset of its dims (or undefined = all) and keepdim. */
const arbReduction = (kind: 'float' | 'int' = 'float', minDim = 0) =>
  fc
    .tuple(
      arbInputOf(arbShape(0, 4, 4, minDim), kind),
      fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      fc.boolean(),
      fc.boolean(),
    )
    .map(([inp, pick, all, keepdim]): [Input, number[] | undefined, boolean] => {
      const rank = inp.ref.shape.length;
      const dims = [...Array(rank).keys()].filter((d) => pick[d]);
      return [inp, all || dims.length === 0 ? undefined : dims, keepdim];
    });

const allDims = (inp: Input, dims: number[] | undefined) => dims ?? [...inp.ref.shape.keys()];
/** Negative spellings of dims, to exercise normalisation. */
const negative = (inp: Input, dims: number[] | undefined) => dims?.map((d) => d - inp.ref.shape.length);

export function reduceSuite({ device, tol, numRuns }: SuiteContext): void {
  describe('reductions', () => {
    it('sum (float32 and int32) and mean over several dims with keepdim; zero-size sums are 0', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbReduction('float'),
          arbReduction('int'),
          async ([inp, dims, keepdim], [ii, idims, ik]) => {
            const bag = new Bag();
            try {
              const x = bag.add(inp.make(device));
              const want = refSum(inp.ref, allDims(inp, dims), keepdim);
              assertClose(
                await read(bag.add(x.sum(negative(inp, dims), keepdim))),
                f32(want),
                tol.reduce,
                'sum',
              );
              const n = want.data.length === 0 ? 1 : inp.ref.data.length / want.data.length;
              if (inp.ref.data.length > 0) {
                assertClose(
                  await read(bag.add(x.mean(dims, keepdim))),
                  f32(map(want, (s) => s / n)),
                  tol.reduce,
                  'mean',
                );
              }
              const xi = bag.add(ii.make(device));
              const si = bag.add(xi.sum(idims, ik));
              expect(si.dtype).toBe('int32');
              assertClose(await read(si), refSum(ii.ref, allDims(ii, idims), ik), EXACT, 'sum int32');
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('max/min values and argmax/argmin (first occurrence) along dims', async () => {
      await fc.assert(
        fc.asyncProperty(arbReduction('float', 1), fc.nat(), async ([inp, dims, keepdim], seed) => {
          const bag = new Bag();
          try {
            const x = bag.add(inp.make(device));
            const d = allDims(inp, dims);
            assertClose(
              await read(bag.add(x.max(dims, keepdim))),
              refMax(inp.ref, d, keepdim, 1),
              EXACT,
              'max',
            );
            assertClose(
              await read(bag.add(x.min(dims, keepdim))),
              refMax(inp.ref, d, keepdim, -1),
              EXACT,
              'min',
            );
            const rank = inp.ref.shape.length;
            if (rank > 0) {
              const one = seed % rank;
              const am = bag.add(x.argmax(one, keepdim));
              expect(am.dtype).toBe('int32');
              assertClose(await read(am), refArgMax(inp.ref, [one], keepdim, 1), EXACT, 'argmax');
              assertClose(
                await read(bag.add(x.argmin(one - rank, keepdim))),
                refArgMax(inp.ref, [one], keepdim, -1),
                EXACT,
                'argmin',
              );
            }
            // without a dim: over the flattened tensor
            const flat = { shape: [inp.ref.data.length], data: inp.ref.data };
            assertClose(
              await read(bag.add(x.argmax())),
              refArgMax(flat, [0], false, 1),
              EXACT,
              'argmax (flat)',
            );
            assertClose(
              await read(bag.add(x.argmin())),
              refArgMax(flat, [0], false, -1),
              EXACT,
              'argmin (flat)',
            );
          } finally {
            bag.dispose();
          }
        }),
        { numRuns },
      );
    });

    it('var (unbiased and biased) and logsumexp over several dims', async () => {
      await fc.assert(
        fc.asyncProperty(arbReduction('float', 2), fc.boolean(), async ([inp, dims, keepdim], unbiased) => {
          const bag = new Bag();
          try {
            const x = bag.add(inp.make(device));
            const d = allDims(inp, dims);
            const v = bag.add(x.var(dims, { unbiased, keepdim }));
            assertClose(
              await read(v),
              f32(refVar(inp.ref, d, keepdim, unbiased)),
              tol.reduce,
              `var unbiased=${unbiased}`,
            );
            const l = bag.add(x.logsumexp(dims, keepdim));
            assertClose(await read(l), f32(refLogSumExp(inp.ref, d, keepdim)), tol.reduce, 'logsumexp');
            // shift invariance: lse(x + c) = lse(x) + c
            const shifted = bag.add(bag.add(x.add(100)).logsumexp(dims, keepdim));
            assertClose(
              await read(shifted),
              f32(map(refLogSumExp(inp.ref, d, keepdim), (s) => s + 100)),
              { rtol: tol.reduce.rtol, atol: 1e-4 },
              'logsumexp shift',
            );
          } finally {
            bag.dispose();
          }
        }),
        { numRuns },
      );
    });

    it('softmax sums to 1 and matches the definition; logSoftmax = log(softmax); shift invariant', async () => {
      await fc.assert(
        fc.asyncProperty(arbInputOf(arbShape(1, 3, 5, 1), 'float'), fc.nat(), async (inp, seed) => {
          const bag = new Bag();
          try {
            const rank = inp.ref.shape.length;
            const dim = seed % rank;
            const x = bag.add(inp.make(device));
            const s = bag.add(x.softmax(dim));
            const want = refSoftmax(inp.ref, dim);
            assertClose(await read(s), f32(want), tol.reduce, 'softmax');
            const sums = bag.add(s.sum(dim));
            assertClose(
              await read(sums),
              map(refSum(inp.ref, [dim], false), () => 1),
              tol.reduce,
              'softmax sums',
            );
            const ls = bag.add(x.logSoftmax(dim - rank));
            assertClose(await read(ls), f32(map(want, Math.log)), tol.reduce, 'logSoftmax');
            const shifted = bag.add(bag.add(x.sub(7)).softmax(dim));
            assertClose(await read(shifted), f32(want), tol.reduce, 'softmax(x − c)');
          } finally {
            bag.dispose();
          }
        }),
        { numRuns },
      );
      const bag = new Bag();
      try {
        // large logits do not overflow; a row of −inf gives −inf for logsumexp
        const big = bag.add(
          lr.tensor(
            [
              [1000, 1000],
              [-1e30, 0],
            ],
            { device },
          ),
        );
        assertClose(
          await read(bag.add(big.softmax(1))),
          { shape: [2, 2], data: [0.5, 0.5, 0, 1] },
          tol.reduce,
        );
        const ninf = bag.add(lr.full([1, 3], Number.NEGATIVE_INFINITY, { device }));
        expect(Array.from(await bag.add(ninf.logsumexp(1)).data())).toEqual([Number.NEGATIVE_INFINITY]);
      } finally {
        bag.dispose();
      }
    });

    it('reduction errors name the op', () => {
      const bag = new Bag();
      try {
        const x = bag.add(lr.zeros([2, 0], { device }));
        expect(() => x.max(1)).toThrow(/^max: cannot reduce .*\[2,0\]/);
        expect(() => x.argmin(1)).toThrow(/^argmin: /);
        expect(() => x.sum(2)).toThrow(/^sum: dim 2 out of range for a tensor of rank 2/);
        expect(() => x.sum([0, -2])).toThrow(/^sum: dims contain duplicates/);
        expect(() => x.softmax(3)).toThrow(/^softmax: dim 3 out of range/);
      } finally {
        bag.dispose();
      }
    });

    it('sum ∘ add = add ∘ sum (linearity), on broadcast views', async () => {
      await fc.assert(
        fc.asyncProperty(arbInput('float', 3, 4), async (inp) => {
          const bag = new Bag();
          try {
            const x = bag.add(inp.make(device));
            const lhs = bag.add(bag.add(x.add(x)).sum());
            const rhs = bag.add(bag.add(x.sum()).mul(2));
            assertClose(await read(lhs), await read(rhs), tol.reduce, 'Σ(x+x) = 2Σx');
            assertClose(
              await read(rhs),
              f32(
                zip(
                  refSum(inp.ref, [...inp.ref.shape.keys()], false),
                  { shape: [], data: [2] },
                  (a, b) => a * b,
                ),
              ),
              tol.reduce,
            );
          } finally {
            bag.dispose();
          }
        }),
        { numRuns },
      );
    });
  });
}
