import { describe, expect, it } from 'vitest';
import * as lr from '../src/index.js';
import { refAddmm, relErr } from './addmm-reference.js';

/** lr.addmm on the CPU (the matmulEpilogue kernel over the registered matmul) against float64 loops. */
describe('addmm on the cpu', () => {
  it('alpha·a@b + bias + residual for 1-D/2-D/3-D a, plain and transposed b', async () => {
    for (const [sa, n] of [
      [[5], 3],
      [[7, 5], 4],
      [[2, 3, 6], 5],
    ] as [number[], number][]) {
      const k = sa[sa.length - 1];
      const rows = sa.length === 1 ? 1 : sa.slice(0, -1).reduce((x, y) => x * y, 1);
      const a = lr.randn(sa);
      const w = lr.randn([n, k]); // b = wᵀ, a strided view
      const bias = lr.randn([n]);
      const res = lr.randn([...sa.slice(0, -1), n]);
      const bRef = await w.T.contiguous().data();
      for (const [useBias, useRes, alpha] of [
        [true, true, 0.5],
        [true, false, 1],
        [false, true, -2],
        [false, false, 3],
      ] as [boolean, boolean, number][]) {
        const y = lr.addmm(a, w.T, { bias: useBias ? bias : null, residual: useRes ? res : null, alpha });
        expect(y.shape).toEqual([...sa.slice(0, -1), n]);
        const ref = refAddmm(
          await a.data(),
          bRef,
          rows,
          k,
          n,
          useBias ? await bias.data() : null,
          useRes ? await res.data() : null,
          alpha,
        );
        expect(relErr(await y.data(), ref)).toBeLessThan(1e-5);
        y.dispose();
      }
      lr.dispose(a, w, bias, res);
    }
  });

  it('refuses bad shapes and dtypes with messages that say what came', () => {
    const a = lr.randn([4, 3]);
    const b = lr.randn([3, 2]);
    expect(() => lr.addmm(a, lr.randn([4, 2]))).toThrow(/inner dimensions differ: \[4,3\] @ \[4,2\]/);
    expect(() => lr.addmm(a, b, { bias: lr.randn([3]) })).toThrow(/bias must be \[2\], got \[3\]/);
    expect(() => lr.addmm(a, b, { residual: lr.randn([1, 2]) })).toThrow(
      /residual must be the output's shape \[4,2\], got \[1,2\]/,
    );
    expect(() => lr.addmm(a, lr.randn([2, 3, 2]))).toThrow(/expected a \[\.\.\., M, K\] @ b \[K, N\]/);
    expect(() => lr.addmm(a, lr.ones([3, 2], { dtype: 'int32' }))).toThrow(
      /expected float32 tensors, got int32/,
    );
  });
});
