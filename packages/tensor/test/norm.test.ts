import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getKernel } from '../src/engine/registry.js';
import * as lr from '../src/index.js';
import { countKernels } from './count-kernels.js';
import { composedNorm, refNorm, worst } from './norm-reference.js';

/**
 * The fused layer/RMS norms on the CPU: against float64 loops and the composition of public ops
 * over random shapes (rows 1..37, cols 1..300), the residual add as the kernel's prologue (one
 * kernel, counted), the gradient kernels against the analytic formula in float64, and errors.
 */

const values = (t: lr.Tensor) => t.data().then((d) => Array.from(d));

describe('fused layerNorm / rmsNorm (cpu)', () => {
  it('match float64 loops and the composed ops over random shapes, with and without weight/bias', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 37 }),
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom<'layer' | 'rms'>('layer', 'rms'),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        async (rows, cols, kind, withW, withB, seed) => {
          lr.manualSeed(seed);
          const x = lr.randn([rows, cols]).mul(3).add(1);
          const w = withW ? lr.randn([cols]) : null;
          const b = withB && kind === 'layer' ? lr.randn([cols]) : null;
          const eps = 1e-5;
          const fused = kind === 'layer' ? lr.layerNorm(x, [cols], w, b, eps) : lr.rmsNorm(x, [cols], w, eps);
          const composed = composedNorm(kind, x, [cols], w, b, eps);
          const ref = refNorm(
            kind,
            await x.data(),
            rows,
            cols,
            w && (await w.data()),
            b && (await b.data()),
            eps,
          );
          const got = await values(fused);
          expect(fused.shape).toEqual([rows, cols]);
          expect(worst(got, ref, 1e-5, 1e-5)).toBeLessThanOrEqual(1);
          expect(worst(got, await values(composed), 1e-4, 1e-4)).toBeLessThanOrEqual(1);
          lr.dispose(x, fused, composed, ...(w ? [w] : []), ...(b ? [b] : []));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('normalize over two trailing dims of a strided view, and cast an int input', async () => {
    lr.manualSeed(1);
    const base = lr.randn([3, 4, 5]);
    const x = base.permute([2, 0, 1]); // [5, 3, 4], not contiguous
    const w = lr.randn([3, 4]);
    const b = lr.randn([3, 4]);
    const y = lr.layerNorm(x, [3, 4], w, b);
    const ref = refNorm('layer', await x.contiguous().data(), 5, 12, await w.data(), await b.data(), 1e-5);
    expect(worst(await values(y), ref, 1e-5, 1e-5)).toBeLessThanOrEqual(1);
    const ints = lr
      .tensor([
        [1, 2, 3],
        [4, 6, 8],
      ])
      .cast('int32');
    const yi = lr.rmsNorm(ints, 3, null, 0);
    expect(yi.dtype).toBe('float32');
    expect(
      worst(await values(yi), refNorm('rms', [1, 2, 3, 4, 6, 8], 2, 3, null, null, 0), 1e-6, 1e-6),
    ).toBeLessThanOrEqual(1);
    lr.dispose(base, w, b, y, ints, yi);
  });

  it('a residual add before the norm is its prologue: one kernel, no elementwise kernel', async () => {
    lr.manualSeed(2);
    const x = lr.randn([6, 50]);
    const attn = lr.randn([6, 50]);
    const w = lr.randn([50]);
    // random tensors are lazy device draws: computed here, so only the norm's own kernels count
    for (const t of [x, attn, w]) lr.realize(t.storage);
    let y: lr.Tensor | null = null;
    const counts = countKernels(() => {
      y = lr.layerNorm(x.add(attn).mul(0.5), [50], w);
    });
    expect(counts).toEqual({ norm: 1 });
    const sum = lr.tidy(() => x.add(attn).mul(0.5));
    const ref = refNorm('layer', await sum.data(), 6, 50, await w.data(), null, 1e-5);
    expect(worst(await values(y!), ref, 1e-5, 1e-5)).toBeLessThanOrEqual(1);
    // the composition takes reductions and elementwise kernels: 3 kernels or more
    const composed = countKernels(() => {
      const c = composedNorm('layer', x.add(attn).mul(0.5), [50], w, null, 1e-5);
      lr.realize(c.storage);
      c.dispose();
    });
    expect(Object.values(composed).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(3);
    lr.dispose(x, attn, w, y!, sum);
  });

  it('a residual stream is summed once per term: no norm re-reads every earlier branch', async () => {
    // x_{i+1} = x_i + branch(norm(x_i)), as a pre-norm decoder: without the second-use rule in
    // engine/lazy.ts each norm inlined the whole chain, reading i + 1 tensors at layer i
    lr.manualSeed(4);
    const [rows, cols, layers] = [5, 24, 10];
    const weights = Array.from({ length: layers }, () => lr.randn([cols, cols]).mul(0.2));
    const x0 = lr.randn([rows, cols]);
    for (const t of [x0, ...weights]) lr.realize(t.storage);
    const widths: number[] = [];
    const norm = getKernel('test', 'cpu', 'norm');
    const spy = ((...args: Parameters<typeof norm>) => {
      widths.push(new Set(args[1].inputs.map((v) => v.storage)).size);
      return norm(...args);
    }) as typeof norm;
    const run = (): lr.Tensor => {
      let x = x0;
      for (const w of weights) x = x.add(lr.rmsNorm(x, [cols]).matmul(w));
      return lr.rmsNorm(x, [cols]);
    };
    lr.registerKernels('cpu', { norm: spy });
    let y: lr.Tensor;
    let counts: Record<string, number>;
    try {
      counts = countKernels(() => {
        y = run();
        lr.realize(y.storage);
      });
    } finally {
      lr.registerKernels('cpu', { norm });
    }
    expect(widths.length).toBe(layers + 1);
    expect(Math.max(...widths)).toBeLessThanOrEqual(3);
    // each residual computed at most once: at most one elementwise kernel a layer
    expect(counts.elementwise ?? 0).toBeLessThanOrEqual(layers);
    lr.setFusion(false);
    const eager = run();
    lr.setFusion(true);
    expect(worst(await values(y!), Array.from(await eager.data()), 1e-6, 1e-6)).toBeLessThanOrEqual(1);
  });

  it('the gradient kernels match the analytic formula in float64', async () => {
    lr.manualSeed(3);
    for (const kind of ['layer', 'rms'] as const) {
      const rows = 7;
      const cols = 19;
      const x = lr.randn([rows, cols]).mul(2);
      const g = lr.randn([rows, cols]);
      const w = lr.randn([cols]);
      const xs = await x.data();
      const gs = await g.data();
      const ws = await w.data();
      // statistics in float64, then the textbook gradient of y = x̂·w + b
      const mean = new Float32Array(rows);
      const rstd = new Float32Array(rows);
      const dx = new Float64Array(rows * cols);
      const dw = new Float64Array(cols);
      const db = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(xs.subarray(r * cols, (r + 1) * cols));
        const mu = kind === 'layer' ? row.reduce((a, v) => a + v, 0) / cols : 0;
        const rs = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / cols + 1e-5);
        mean[r] = mu;
        rstd[r] = rs;
        const xh = row.map((v) => (v - mu) * rs);
        const gw = row.map((_, j) => gs[r * cols + j] * ws[j]);
        const a = kind === 'layer' ? gw.reduce((s, v) => s + v, 0) / cols : 0;
        const c = gw.reduce((s, v, j) => s + v * xh[j], 0) / cols;
        for (let j = 0; j < cols; j++) {
          dx[r * cols + j] = rs * (gw[j] - a - xh[j] * c);
          dw[j] += gs[r * cols + j] * xh[j];
          db[j] += gs[r * cols + j];
        }
      }
      const m = lr.fromTypedArray(mean, [rows]);
      const s = lr.fromTypedArray(rstd, [rows]);
      const grads = lr.normBackward(kind, g, x, [cols], w, kind === 'layer' ? m : null, s, {
        input: true,
        weight: true,
        bias: true,
      });
      expect(worst(await values(grads.input!), dx, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      expect(worst(await values(grads.weight!), dw, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      if (kind === 'layer') expect(worst(await values(grads.bias!), db, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      else expect(grads.bias).toBeNull();
      lr.dispose(x, g, w, m, s, grads.input!, grads.weight!, ...(grads.bias ? [grads.bias] : []));
    }
  });

  it('refuses a shape that does not end with the normalized shape, and bad weights', () => {
    const x = lr.zeros([2, 3]);
    expect(() => lr.layerNorm(x, [2])).toThrow(
      'layerNorm: input [2,3] does not end with normalized shape [2]',
    );
    expect(() => lr.rmsNorm(x, [3], lr.zeros([2]))).toThrow(
      'rmsNorm: weight must have the normalized shape [3], got [2]',
    );
    expect(() => lr.layerNorm(x, [3], null, lr.zeros([3], { dtype: 'int32' }))).toThrow(
      'layerNorm: bias must be float32, got int32',
    );
    expect(() => lr.layerNorm(x, [3], null, null, -1)).toThrow(
      'layerNorm: eps must be a non-negative number',
    );
    x.dispose();
  });

  it('an empty batch gives an empty output', async () => {
    const x = lr.zeros([0, 4]);
    const w = lr.ones([4]);
    const y = lr.layerNorm(x, [4], w);
    expect(y.shape).toEqual([0, 4]);
    expect(await values(y)).toEqual([]);
    lr.dispose(x, w, y);
  });
});
