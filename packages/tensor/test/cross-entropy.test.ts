import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getKernel } from '../src/engine/registry.js';
import type { Tensor } from '../src/index.js';
import * as lr from '../src/index.js';
import { wrap } from '../src/ops/util.js';

/**
 * The cross-entropy row kernel and the fused ops on the CPU, against float64 loops written here
 * (not the kernel's): loss_r = logsumexp(x_r) − Σ_j q_j·x_r[j] with q = (1 − ε)·onehot(t) + ε/V,
 * and d loss_r / d x_r = softmax(x_r) − q.
 */

interface Case {
  n: number;
  v: number;
  x: number[];
  labels: number[];
  eps: number;
}

function refRow(row: readonly number[], t: number, eps: number): { loss: number; grad: number[] } {
  const v = row.length;
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
  const q = row.map((_, j) => (j === t ? 1 - eps : 0) + eps / v);
  const loss = lse - row.reduce((s, x, j) => s + q[j] * x, 0);
  return { loss, grad: row.map((x, j) => Math.exp(x - lse) - q[j]) };
}

/** Per-row losses and gradients (0 on ignored rows), and the count of rows not ignored. */
function reference(c: Case, ignore = -100) {
  const losses: number[] = [];
  const grads: number[] = [];
  let valid = 0;
  for (let r = 0; r < c.n; r++) {
    const row = c.x.slice(r * c.v, (r + 1) * c.v);
    if (c.labels[r] === ignore) {
      losses.push(0);
      grads.push(...row.map(() => 0));
      continue;
    }
    valid++;
    const { loss, grad } = refRow(row, c.labels[r], c.eps);
    losses.push(loss);
    grads.push(...grad);
  }
  return { losses, grads, valid };
}

const caseArb = fc
  .record({
    n: fc.integer({ min: 1, max: 7 }),
    v: fc.integer({ min: 1, max: 40 }),
    seed: fc.integer({ min: 0, max: 2 ** 30 }),
    eps: fc.constantFrom(0, 0.1, 0.5),
    ignoreRate: fc.constantFrom(0, 0.3, 1),
  })
  .map(({ n, v, seed, eps, ignoreRate }): Case => {
    const g = new lr.Generator(seed);
    const x = Array.from({ length: n * v }, () => (g.nextFloat() - 0.5) * 8);
    const labels = Array.from({ length: n }, () =>
      g.nextFloat() < ignoreRate ? -100 : Math.floor(g.nextFloat() * v),
    );
    return { n, v, x, labels, eps };
  });

const close = (a: ArrayLike<number>, b: readonly number[], tol: number) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < b.length; i++)
    expect(Math.abs(a[i] - b[i]), `element ${i}`).toBeLessThanOrEqual(tol * (1 + Math.abs(b[i])));
};

function rowsKernel(x: Tensor, labels: Tensor, eps: number, writeGrad: boolean): Tensor {
  const k = getKernel('test', x.device, 'crossEntropyRows');
  const [rows, cols] = x.shape;
  return wrap(
    k(x.view_(), labels.view_(), rows, cols, { ignoreIndex: -100, labelSmoothing: eps, writeGrad }),
    [rows],
  );
}

describe('crossEntropyRows kernel (cpu)', () => {
  it('losses and in-place gradients match float64 loops (random N, V, ignored rows, smoothing)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const ref = reference(c);
        const x = lr.tensor(c.x, { shape: [c.n, c.v] });
        const t = lr.tensor(c.labels, { dtype: 'int32' });
        const lossOnly = rowsKernel(x, t, c.eps, false);
        close(await lossOnly.data(), ref.losses, 1e-5);
        close(await x.data(), c.x, 0); // read only without writeGrad
        const loss = rowsKernel(x, t, c.eps, true);
        close(await loss.data(), ref.losses, 1e-5);
        close(await x.data(), ref.grads, 1e-5); // x is now its gradient
        lr.dispose(x, t, lossOnly, loss);
      }),
      { numRuns: 60, seed: 7 },
    );
  });

  it('reads labels through a stride and logits at an offset', async () => {
    const x = lr.tensor([9, 9, 0, 1, 2, 3], { shape: [3, 2] }).slice(0, 1, 3); // rows [0,1], [2,3]
    const t = lr.tensor([1, 5, 0, 5], { dtype: 'int32' }).slice(0, 0, 4, 2); // [1, 0]
    const loss = rowsKernel(x, t, 0, false);
    const want = [refRow([0, 1], 1, 0).loss, refRow([2, 3], 0, 0).loss];
    close(await loss.data(), want, 1e-6);
    lr.dispose(x, t, loss);
  });

  it('marks NaN rows with NaN and leaves ignored rows at 0', async () => {
    const x = lr.tensor([Number.NaN, 1, 0, 1, 1, Number.NaN, 0, 0], { shape: [4, 2] });
    const t = lr.tensor([0, 1, 1, -100], { dtype: 'int32' });
    const loss = await rowsKernel(x, t, 0, true).data();
    expect(loss[0]).toBeNaN();
    expect(loss[1]).toBeCloseTo(Math.log(1 + Math.E) - 1, 6);
    expect(loss[2]).toBeNaN();
    expect(loss[3]).toBe(0);
    expect(Array.from((await x.data()).slice(6))).toEqual([0, 0]);
    lr.dispose(x, t);
  });

  it('refuses a label out of [0, V) that is not ignoreIndex (negatives too), before writing x', async () => {
    const xs = [0, 1, 2, 3, 4, 5];
    for (const bad of [3, -1, -100 + 1, 2 ** 31 - 1]) {
      const x = lr.tensor(xs, { shape: [2, 3] });
      const t = lr.tensor([0, bad], { dtype: 'int32' });
      for (const writeGrad of [false, true]) {
        expect(() => rowsKernel(x, t, 0, writeGrad)).toThrow(
          new RegExp(`^crossEntropyRows: label ${bad} is out of bounds for 3 classes`),
        );
      }
      expect(Array.from(await x.data())).toEqual(xs); // row 0 was valid: still not overwritten
      expect(() => lr.rowCrossEntropy(x, t)).toThrow(/crossEntropyRows: label .* for 3 classes/);
      const h = lr.eye(3).slice(0, 0, 2); // hidden [2, 3], head [V = 3, 3]
      const w = lr.tensor([...xs, 6, 7, 8], { shape: [3, 3] });
      expect(() => lr.linearCrossEntropy(h, w, t)).toThrow(/crossEntropyRows: label .* for 3 classes/);
      lr.dispose(x, t, h, w);
    }
  });
});

describe('rowCrossEntropy and linearCrossEntropy forward (cpu)', () => {
  it('reduce as PyTorch does: mean over rows not ignored (NaN when none), sum, none', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const ref = reference(c);
        const x = lr.tensor(c.x, { shape: [c.n, c.v] });
        const t = lr.tensor(c.labels, { dtype: 'int32' });
        const sum = ref.losses.reduce((a, b) => a + b, 0);
        const opts = { labelSmoothing: c.eps };
        const none = lr.rowCrossEntropy(x, t, { ...opts, reduction: 'none' });
        close(await none.data(), ref.losses, 1e-5);
        const s = (await lr.rowCrossEntropy(x, t, { ...opts, reduction: 'sum' }).item()) as number;
        expect(Math.abs(s - sum)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(sum)));
        const mean = (await lr.rowCrossEntropy(x, t, opts).item()) as number;
        if (ref.valid === 0) expect(mean).toBeNaN();
        else expect(Math.abs(mean - sum / ref.valid)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(sum)));
        close(await x.data(), c.x, 0); // the logits are left as they were
        lr.dispose(x, t, none);
      }),
      { numRuns: 40, seed: 11 },
    );
  });

  it('linearCrossEntropy = crossEntropy(h·Wᵀ + b) for every chunk size, dividing N or not', async () => {
    const g = new lr.Generator(3);
    const [n, c, v] = [7, 5, 13];
    const hv = Array.from({ length: n * c }, () => g.nextFloat() - 0.5);
    const wv = Array.from({ length: v * c }, () => g.nextFloat() - 0.5);
    const bv = Array.from({ length: v }, () => g.nextFloat() - 0.5);
    const labels = [3, -100, 0, 12, 5, -100, 7];
    const logits: number[] = [];
    for (let i = 0; i < n; i++)
      for (let j = 0; j < v; j++) {
        let s = bv[j];
        for (let k = 0; k < c; k++) s += hv[i * c + k] * wv[j * c + k];
        logits.push(s);
      }
    const ref = reference({ n, v, x: logits, labels, eps: 0.2 });
    const h = lr.tensor(hv, { shape: [n, c] });
    const w = lr.tensor(wv, { shape: [v, c] });
    const b = lr.tensor(bv);
    const t = lr.tensor(labels, { dtype: 'int32' });
    for (const chunkSize of [1, 2, 3, 7, 100]) {
      const out = lr.linearCrossEntropy(h, w, t, {
        bias: b,
        chunkSize,
        labelSmoothing: 0.2,
        reduction: 'none',
      });
      close(await out.data(), ref.losses, 1e-5);
      out.dispose();
    }
    lr.dispose(h, w, b, t);
  });

  it('without recording never holds an [N, V] tensor (peak bytes counted)', async () => {
    const [n, c, v] = [64, 8, 500];
    const h = lr.randn([n, c]);
    const w = lr.randn([v, c]);
    const t = lr.randint(0, v, [n], { dtype: 'int32' });
    const full = n * v * 4;
    lr.resetPeakMemory();
    const base = lr.memory().numBytes;
    const fused = lr.linearCrossEntropy(h, w, t, { chunkSize: 8 });
    await fused.data();
    const fusedPeak = lr.peakMemory() - base;
    lr.resetPeakMemory();
    const unfused = lr.tidy(() => lr.rowCrossEntropy(h.matmul(w.T), t));
    const unfusedPeak = lr.peakMemory() - base;
    expect(fusedPeak).toBeLessThan(full / 4); // a chunk is 8 of 64 rows
    expect(unfusedPeak).toBeGreaterThanOrEqual(full); // the measurement can see an [N, V] tensor
    expect((await fused.item()) as number).toBeCloseTo((await unfused.item()) as number, 4);
    lr.dispose(h, w, t, fused, unfused);
  });

  it('rejects wrong shapes, dtypes and options, saying what came', () => {
    const h = lr.zeros([2, 3]);
    const w = lr.zeros([4, 3]);
    const t = lr.tensor([0, 1], { dtype: 'int32' });
    expect(() => lr.linearCrossEntropy(h, lr.zeros([4, 2]), t)).toThrow(
      /weight must be float32 \[V, 3\].*\[4,2\]/,
    );
    expect(() => lr.linearCrossEntropy(h, w, lr.tensor([0, 1]))).toThrow(
      /labels must be int32 \[2\].*float32/,
    );
    expect(() => lr.linearCrossEntropy(h, w, t, { bias: lr.zeros([3]) })).toThrow(
      /bias must be float32 \[4\]/,
    );
    expect(() => lr.linearCrossEntropy(h, w, t, { chunkSize: 0 })).toThrow(
      /chunkSize must be a positive integer/,
    );
    expect(() => lr.rowCrossEntropy(h, t, { labelSmoothing: 2 })).toThrow(
      /labelSmoothing must be in \[0, 1\]/,
    );
    expect(() => lr.rowCrossEntropy(lr.zeros([2]), t)).toThrow(/expected float32 logits \[N, V\]/);
    lr.dispose(h, w, t);
  });
});
