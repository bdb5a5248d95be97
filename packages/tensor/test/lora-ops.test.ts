import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../src/index.js';

/**
 * loraExpand / gatherMatmul on the CPU (the loraMatmul reference loops) against float64 loops
 * written here over random shapes, stacked weights with repeated indices, strided
 * operands; and their refusals of bad shapes, dtypes and indices.
 */
function values(n: number, seed: number): Float32Array {
  const g = new lr.Generator(seed);
  return Float32Array.from({ length: n }, () => g.nextFloat() * 2 - 1);
}

describe('loraExpand and gatherMatmul (CPU)', () => {
  it('equal float64 loops: base + s·h·wᵀ and x[b]·w[index[b]] (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(1000),
        async (b, t, k, n, slots, seed) => {
          const [xv, wv, yv] = [
            values(b * t * k, seed),
            values(slots * k * n, seed + 1),
            values(b * t * n, seed + 2),
          ];
          const idx = Array.from({ length: b }, (_, i) => (seed + i) % slots); // repeats when b > slots
          const x = lr.fromTypedArray(xv, [b, t, k]);
          const w = lr.fromTypedArray(wv, [slots, k, n]);
          const y = lr.fromTypedArray(yv, [b, t, n]);
          const index = lr.tensor(idx, { dtype: 'int32' });
          const got = await lr.gatherMatmul(x, w, index).data();
          const got2 = await lr.loraExpand(y, x, w, { index, scale: -1.5 }).data();
          // unindexed: w of slot 0 given as the transposed view of an [n, k] tensor
          const wT = lr.fromTypedArray(
            Float32Array.from({ length: n * k }, (_, e) => wv[(e % k) * n + Math.floor(e / k)]),
            [n, k],
          );
          const got3 = await lr.loraExpand(y, x, wT.T, { scale: 0.5 }).data();
          for (let s = 0; s < b; s++) {
            const slot = idx[s];
            for (let i = 0; i < t; i++) {
              for (let j = 0; j < n; j++) {
                let acc = 0;
                let acc0 = 0;
                for (let p = 0; p < k; p++) {
                  const xe = xv[(s * t + i) * k + p];
                  acc += xe * wv[(slot * k + p) * n + j];
                  acc0 += xe * wv[p * n + j];
                }
                const o = (s * t + i) * n + j;
                expect(got[o]).toBeCloseTo(acc, 5);
                expect(got2[o]).toBeCloseTo(yv[o] - 1.5 * acc, 5);
                expect(got3[o]).toBeCloseTo(yv[o] + 0.5 * acc0, 5);
              }
            }
          }
          lr.dispose(x, w, y, index, wT);
        },
      ),
      { numRuns: 30, seed: 7 },
    );
  });

  it('refuse bad shapes, dtypes and out-of-range indices with what was expected', () => {
    const x = lr.zeros([2, 3, 4]);
    const w = lr.zeros([2, 4, 5]);
    const ix = lr.tensor([0, 1], { dtype: 'int32' });
    expect(() => lr.gatherMatmul(x, w, lr.tensor([0, 2], { dtype: 'int32' })).data()).toThrow(
      /loraMatmul: index 2 is out of bounds for a dimension of size 2/,
    );
    // a negative index is an error, not a slot from the end (as gather, and PyTorch's indexing rule)
    expect(() => lr.gatherMatmul(x, w, lr.tensor([0, -1], { dtype: 'int32' })).data()).toThrow(
      /loraMatmul: index -1 is out of bounds for a dimension of size 2/,
    );
    expect(() =>
      lr.loraExpand(lr.zeros([2, 3, 5]), x, w, { index: lr.tensor([-2, 0], { dtype: 'int32' }) }),
    ).toThrow(/loraMatmul: index -2 is out of bounds for a dimension of size 2/);
    expect(() => lr.gatherMatmul(x, w, lr.tensor([0, 1, 1], { dtype: 'int32' }))).toThrow(
      /gatherMatmul: input must be \[B, \.\.\., K\] with B = 3/,
    );
    expect(() => lr.gatherMatmul(x, lr.zeros([2, 3, 5]), ix)).toThrow(
      /weight must be a stack \[S, 4, N\], got \[2,3,5\]/,
    );
    expect(() => lr.gatherMatmul(x, w, lr.tensor([0, 1]))).toThrow(
      /index must be a 1-D int32 tensor, got float32/,
    );
    expect(() => lr.loraExpand(lr.zeros([2, 3, 6]), x, lr.zeros([4, 5]))).toThrow(
      /loraExpand: base must have the output's shape \[2,3,5\], got \[2,3,6\]/,
    );
    expect(() => lr.loraExpand(lr.zeros([2, 3, 5]), x, lr.zeros([3, 5]))).toThrow(
      /expected input \[\.\.\., K\] and weight \[K, N\]/,
    );
    expect(() => lr.loraExpand(lr.zeros([2, 3, 5], { dtype: 'int32' }), x, lr.zeros([4, 5]))).toThrow(
      /base must be float32, got int32/,
    );
  });
});
