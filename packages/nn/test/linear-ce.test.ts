import { noGrad } from '@lowrank/autograd';
import { F, type LossReduction } from '@lowrank/nn';
import type { Tensor } from '@lowrank/tensor';
import * as lr from '@lowrank/tensor';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { webgpuUnavailable } from './helpers.js';

/**
 * F.linearCrossEntropy against the unfused composition written out here (linear, logSoftmax,
 * gather, the smoothing mean, the ignore mask: the pre-fusion F.crossEntropy), values and
 * gradients, over random N, C, V, chunk sizes, ignored labels, smoothing, reductions, bias, and
 * a weight that requires grad or not ('none' with a trained weight recomputes in backward); and the memory it saves, counted with lr.peakMemory().
 */

interface Opts {
  eps: number;
  reduction: LossReduction;
}

function composed(h: Tensor, w: Tensor, b: Tensor | null, t: Tensor, o: Opts): Tensor {
  let logits = h.matmul(w.T);
  if (b) logits = logits.add(b);
  const logp = logits.logSoftmax(-1);
  const valid = t.ne(-100);
  const nll = logp
    .gather(1, lr.where(valid, t, 0).unsqueeze(1))
    .squeeze(1)
    .neg();
  const rows = lr.where(valid, nll.mul(1 - o.eps).add(logp.mean(-1).neg().mul(o.eps)), 0);
  if (o.reduction === 'none') return rows;
  return o.reduction === 'sum' ? rows.sum() : rows.sum().div(valid.sum());
}

const arb = fc.record({
  n: fc.integer({ min: 1, max: 9 }),
  c: fc.integer({ min: 1, max: 4 }),
  v: fc.integer({ min: 1, max: 12 }),
  chunk: fc.integer({ min: 1, max: 11 }),
  seed: fc.integer({ min: 0, max: 2 ** 30 }),
  ignoreRate: fc.constantFrom(0, 0.3, 1),
  eps: fc.constantFrom(0, 0.1),
  reduction: fc.constantFrom<LossReduction>('mean', 'sum', 'none'),
  bias: fc.boolean(),
  weightGrad: fc.boolean(),
});

async function values(t: Tensor | null | undefined): Promise<number[]> {
  if (!t) throw new Error('missing gradient');
  return Array.from((await t.data()) as Float32Array);
}

function expectClose(got: number[], want: number[], what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i])) expect(got[i], `${what}[${i}]`).toBeNaN();
    else
      expect(Math.abs(got[i] - want[i]), `${what}[${i}]: ${got[i]} vs ${want[i]}`).toBeLessThanOrEqual(
        1e-5 * (1 + Math.abs(want[i])),
      );
  }
}

describe('F.linearCrossEntropy (cpu)', () => {
  it('matches the unfused composition: loss and d(hidden), d(weight), d(bias)', async () => {
    await fc.assert(
      fc.asyncProperty(arb, async (k) => {
        const g = new lr.Generator(k.seed);
        const draw = (size: number) => Array.from({ length: size }, () => (g.nextFloat() - 0.5) * 2);
        const [hv, wv, bv] = [draw(k.n * k.c), draw(k.v * k.c), draw(k.v)];
        const labels = Array.from({ length: k.n }, () =>
          g.nextFloat() < k.ignoreRate ? -100 : Math.floor(g.nextFloat() * k.v),
        );
        const t = lr.tensor(labels, { dtype: 'int32' });
        const upstream = lr.randn([k.n], { generator: g });
        const results: number[][][] = [];
        for (const fused of [true, false]) {
          const h = lr.tensor(hv, { shape: [k.n, k.c], requiresGrad: true });
          const w = lr.tensor(wv, { shape: [k.v, k.c], requiresGrad: k.weightGrad });
          const b = k.bias ? lr.tensor(bv, { requiresGrad: k.weightGrad }) : null;
          const o = { eps: k.eps, reduction: k.reduction };
          const loss = fused
            ? F.linearCrossEntropy(h, w, t, {
                bias: b,
                chunkSize: k.chunk,
                labelSmoothing: k.eps,
                reduction: k.reduction,
              })
            : composed(h, w, b, t, o);
          const scalar = k.reduction === 'none' ? loss.mul(upstream).sum() : loss.mul(1.5);
          scalar.backward();
          results.push([
            await values(loss),
            await values(h.grad),
            k.weightGrad ? await values(w.grad) : [],
            k.weightGrad && b ? await values(b.grad) : [],
          ]);
          if (!k.weightGrad) expect(w.grad).toBeNull();
          lr.dispose(h, w, b, loss, scalar, h.grad, w.grad, b?.grad);
        }
        const [fused, ref] = results;
        for (const [i, what] of ['loss', 'dHidden', 'dWeight', 'dBias'].entries())
          expectClose(fused[i], ref[i], what);
        lr.dispose(t, upstream);
      }),
      { numRuns: 80, seed: 3 },
    );
  });

  it('takes [B, T, C] hidden states with [B, T] labels (reduction none keeps [B, T])', async () => {
    const h = lr.randn([2, 3, 4], { requiresGrad: true });
    const w = lr.randn([5, 4]);
    const t = lr.tensor(
      [
        [0, 1, 2],
        [3, 4, -100],
      ],
      { dtype: 'int32' },
    );
    const rows = F.linearCrossEntropy(h, w, t, { reduction: 'none', chunkSize: 4 });
    expect(rows.shape).toEqual([2, 3]);
    const want = noGrad(() =>
      F.crossEntropy(h.reshape(6, 4).matmul(w.T), t.reshape(6), { reduction: 'none' }),
    );
    expectClose(await values(rows), await values(want), 'rows');
    rows.sum().backward();
    expect(h.grad!.shape).toEqual([2, 3, 4]);
    lr.dispose(h, w, t, rows, want);
  });

  it('checks the labels against the hidden states, saying what came', () => {
    const h = lr.randn([2, 3], { requiresGrad: true });
    const w = lr.randn([4, 3]);
    expect(() => F.linearCrossEntropy(h, w, lr.tensor([0, 1, 2], { dtype: 'int32' }))).toThrow(
      /labels must be int32 \[2\] \(hidden's leading dims\), got int32 \[3\]/,
    );
    lr.dispose(h, w);
  });

  for (const weightGrad of [false, true]) {
    it(`forward + backward never hold an [N, V] tensor (weight ${weightGrad ? 'trained' : 'frozen'})`, async () => {
      const [n, c, v] = [256, 16, 1000];
      const full = n * v * 4; // 1 MB: one [N, V] float32 tensor
      const h = lr.randn([n, c], { requiresGrad: true });
      const w = lr.randn([v, c], { requiresGrad: weightGrad });
      const t = lr.randint(0, v, [n], { dtype: 'int32' });
      const step = (fused: boolean): number => {
        const base = lr.memory().numBytes;
        lr.resetPeakMemory();
        lr.tidy(() => {
          const loss = fused
            ? F.linearCrossEntropy(h, w, t, { chunkSize: 32 })
            : composed(h, w, null, t, { eps: 0, reduction: 'mean' });
          loss.backward();
        });
        const peak = lr.peakMemory() - base;
        lr.dispose(h.grad, w.grad);
        h.grad = null;
        w.grad = null;
        return peak;
      };
      const fusedPeak = step(true);
      const unfusedPeak = step(false);
      // a 32-row chunk of logits is 128 kB; the weight's gradient and one chunk's term 64 kB each
      expect(fusedPeak).toBeLessThan(full / 2);
      expect(unfusedPeak).toBeGreaterThan(2 * full); // logits, log-probabilities, their gradients
      lr.dispose(h, w, t);
    });
  }
});

const unavailable = await webgpuUnavailable();

describe.skipIf(unavailable !== null)(
  `F.linearCrossEntropy on webgpu${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    it('matches the composition and holds no [N, V] buffer (GPU bytes in use)', async () => {
      const device = 'webgpu';
      const [n, c, v] = [128, 16, 1000];
      const g = new lr.Generator(8);
      const hv = Array.from({ length: n * c }, () => g.nextFloat() - 0.5);
      const wv = Array.from({ length: v * c }, () => g.nextFloat() - 0.5);
      const t = lr.tensor(
        Array.from({ length: n }, (_, i) => (i % 5 === 0 ? -100 : (i * 31) % v)),
        { dtype: 'int32', device },
      );
      const stats = lr.webgpuStats()!;
      const results: { loss: number[]; dh: number[]; peak: number }[] = [];
      for (const fused of [true, false]) {
        const h = lr.tensor(hv, { shape: [n, c], device, requiresGrad: true });
        const w = lr.tensor(wv, { shape: [v, c], device });
        await lr.getBackend(device).flush?.();
        const base = stats.bytesInUse;
        lr.webgpuProfiler()!.resetPeakBytes();
        const loss = lr.tidy(() => {
          const l = fused
            ? F.linearCrossEntropy(h, w, t, { chunkSize: 16, labelSmoothing: 0.1 })
            : composed(h, w, null, t, { eps: 0.1, reduction: 'mean' });
          l.backward();
          return l;
        });
        const dh = await values(h.grad);
        results.push({ loss: await values(loss), dh, peak: stats.peakBytesInUse - base });
        lr.dispose(h, w, loss, h.grad);
      }
      const [fused, ref] = results;
      expectClose(fused.loss, ref.loss, 'loss');
      expectClose(fused.dh, ref.dh, 'dHidden');
      const full = n * v * 4;
      expect(fused.peak).toBeLessThan(full / 2); // a 16-row chunk is 64 kB of 512 kB
      expect(ref.peak).toBeGreaterThan(full);
      t.dispose();
    });
  },
);
