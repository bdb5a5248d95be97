import { describe, expect, it } from 'vitest';
import { getKernel } from '../../src/engine/registry.js';
import type { Tensor } from '../../src/index.js';
import * as lr from '../../src/index.js';
import { wrap } from '../../src/ops/util.js';
import { initWebGPU, rng } from './helpers.js';

/**
 * The WebGPU cross-entropy row kernel against the CPU one (the reference loops, tested against
 * float64 in ../cross-entropy.test.ts): losses and the in-place gradient, at row lengths that
 * are not multiples of the workgroup (GPT-2's V = 50,257 included), ignored rows, smoothing,
 * NaN rows; out-of-range labels reported at read-back; and the fused ops end to end.
 */
const skip = await initWebGPU();

function rowsKernel(x: Tensor, labels: Tensor, eps: number, writeGrad: boolean): Tensor {
  const [rows, cols] = x.shape;
  const k = getKernel('test', x.device, 'crossEntropyRows');
  return wrap(
    k(x.view_(), labels.view_(), rows, cols, { ignoreIndex: -100, labelSmoothing: eps, writeGrad }),
    [rows],
  );
}

function randomCase(n: number, v: number, seed: number): { x: Float32Array; labels: Int32Array } {
  const r = rng(seed);
  const x = Float32Array.from({ length: n * v }, () => (r() - 0.5) * 10);
  const labels = Int32Array.from({ length: n }, (_, i) => (i % 3 === 2 ? -100 : Math.floor(r() * v)));
  return { x, labels };
}

function expectClose(got: Float32Array, want: Float32Array, tol: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i])) expect(got[i], `element ${i}`).toBeNaN();
    else worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
  }
  expect(worst).toBeLessThanOrEqual(tol);
}

describe.skipIf(skip !== null)(`crossEntropyRows on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('matches the CPU kernel over odd row lengths, smoothing and in-place gradients', async () => {
    const shapes: [number, number, number][] = [
      [1, 1, 0],
      [3, 7, 0.1],
      [5, 255, 0],
      [4, 257, 0.3],
      [2, 1000, 0],
      [2, 50257, 0.1],
    ];
    for (const [n, v, eps] of shapes) {
      const { x, labels } = randomCase(n, v, n * 1000 + v);
      const out: Record<string, { loss: Float32Array; grad: Float32Array }> = {};
      for (const device of ['cpu', 'webgpu'] as const) {
        const xt = lr.fromTypedArray(x.slice(), [n, v], { device });
        const t = lr.fromTypedArray(labels.slice(), [n], { device, dtype: 'int32' });
        const loss = rowsKernel(xt, t, eps, true);
        out[device] = { loss: (await loss.data()) as Float32Array, grad: (await xt.data()) as Float32Array };
        lr.dispose(xt, t, loss);
      }
      expectClose(out.webgpu.loss, out.cpu.loss, 2e-5);
      expectClose(out.webgpu.grad, out.cpu.grad, 1e-5);
    }
  });

  it('leaves the logits alone without writeGrad; NaN rows and ignored rows as on the CPU', async () => {
    const x = new Float32Array([Number.NaN, 1, 0, 0, 1, 0, 0, 1, Number.NaN, 2, 3, 4]);
    const labels = new Int32Array([0, 2, 1, -100]);
    const res: Record<string, Float32Array> = {};
    for (const device of ['cpu', 'webgpu'] as const) {
      const xt = lr.fromTypedArray(x.slice(), [4, 3], { device });
      const t = lr.fromTypedArray(labels.slice(), [4], { device, dtype: 'int32' });
      res[device] = (await rowsKernel(xt, t, 0, false).data()) as Float32Array;
      expect(Array.from((await xt.data()) as Float32Array)).toEqual(Array.from(x));
      lr.dispose(xt, t);
    }
    expect(res.webgpu[0]).toBeNaN();
    expect(res.webgpu[1]).toBeCloseTo(Math.log(2 + Math.E), 5);
    expect(res.webgpu[2]).toBeNaN();
    expect(res.webgpu[3]).toBe(0);
    expectClose(res.webgpu, res.cpu, 1e-6);
  });

  it('reports a label out of [0, V) that is not ignoreIndex at the next read-back, as the CPU throws', async () => {
    for (const bad of [3, -1]) {
      const x = lr.ones([2, 3], { device: 'webgpu' });
      const t = lr.tensor([bad, 0], { dtype: 'int32', device: 'webgpu' });
      const want = new RegExp(`^crossEntropyRows: label ${bad} is out of bounds for 3 classes`);
      await expect(rowsKernel(x, t, 0, true).data()).rejects.toThrow(want);
      await expect(lr.rowCrossEntropy(x, t).item()).rejects.toThrow(want);
      // the flag was cleared by the read that reported it: a good label reads back normally
      const ok = lr.tensor([2, 0], { dtype: 'int32', device: 'webgpu' });
      const y = lr.ones([2, 3], { device: 'webgpu' });
      expect(await lr.rowCrossEntropy(y, ok).item()).toBeCloseTo(Math.log(3), 5);
      lr.dispose(x, t, ok, y);
    }
  });

  it('linearCrossEntropy and rowCrossEntropy agree with the CPU (chunks not dividing N, bias, smoothing)', async () => {
    const [n, c, v] = [11, 16, 300];
    const r = rng(5);
    const hv = Float32Array.from({ length: n * c }, () => r() - 0.5);
    const wv = Float32Array.from({ length: v * c }, () => r() - 0.5);
    const bv = Float32Array.from({ length: v }, () => r() - 0.5);
    const labels = Int32Array.from({ length: n }, (_, i) => (i === 4 ? -100 : (i * 37) % v));
    const got: Record<string, number[]> = {};
    for (const device of ['cpu', 'webgpu'] as const) {
      const h = lr.fromTypedArray(hv, [n, c], { device });
      const w = lr.fromTypedArray(wv, [v, c], { device });
      const b = lr.fromTypedArray(bv, [v], { device });
      const t = lr.fromTypedArray(labels, [n], { device, dtype: 'int32' });
      const fused = lr.linearCrossEntropy(h, w, t, { bias: b, chunkSize: 4, labelSmoothing: 0.1 });
      const rows = lr.tidy(() => lr.rowCrossEntropy(h.matmul(w.T).add(b), t, { reduction: 'none' }));
      got[device] = [(await fused.item()) as number, ...Array.from((await rows.data()) as Float32Array)];
      lr.dispose(h, w, b, t, fused, rows);
    }
    expectClose(Float32Array.from(got.webgpu), Float32Array.from(got.cpu), 1e-5);
  });
});
