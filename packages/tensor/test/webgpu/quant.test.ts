import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { maxRelErr, quantCase, refMatmul, values } from '../quant-reference.js';
import { initWebGPU } from './helpers.js';

/**
 * The WebGPU quantized kernels (decode in the tile loads) against float64 loops over the host
 * dequantization (itself checked against the Python reference in ../quant.test.ts): dequantize
 * bit for bit, the matmul within float32 accumulation, both orientations, nf4/int8, double
 * quantization, shapes that are not multiples of the block or of the 16×16 tile.
 */
const skip = await initWebGPU();

describe.skipIf(skip !== null)(`quantized kernels on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('dequantize gives the host values exactly (nf4 double quant, int8 per channel)', async () => {
    for (const options of [
      { bits: 'nf4', blockSize: 16, doubleQuant: true },
      { bits: 'int8', blockSize: 'channel' },
    ] as const) {
      const q = lr.quantizeData(values(9 * 300, 5), 9, 300, options);
      const w = lr.QuantizedWeight.fromData(q, 'webgpu');
      const t = lr.dequantize(w);
      expect(t.device).toBe('webgpu');
      expect(Array.from((await t.data()) as Float32Array)).toEqual(Array.from(lr.dequantizeData(q)));
      t.dispose();
      w.dispose();
    }
  });

  it('quantizedMatmul equals x·dequant(W)ᵀ / x·dequant(W) in float64 (property, small shapes)', async () => {
    await fc.assert(
      fc.asyncProperty(quantCase(40), async (c) => {
        const q = lr.quantizeData(values(c.rows * c.cols, c.seed, 0.3), c.rows, c.cols, c);
        const w = lr.QuantizedWeight.fromData(q, 'webgpu');
        const k = c.transpose ? c.cols : c.rows;
        const xv = values(c.m * k, c.seed + 1);
        const x = lr.tensor(xv, { shape: [c.m, k], device: 'webgpu' });
        const y = lr.quantizedMatmul(x, w, { transpose: c.transpose });
        const want = refMatmul(lr.dequantizeData(q), c.rows, c.cols, xv, c.m, c.transpose);
        expect(maxRelErr((await y.data()) as Float32Array, want)).toBeLessThan(1e-5);
        x.dispose();
        y.dispose();
        w.dispose();
      }),
      { numRuns: 12 },
    );
  }, 180_000); // first compiles of the 8 pipeline variants on lavapipe

  it('several 64×64 tiles and K steps with a strided x: [130, 200]·W [150, 200]ᵀ and [130, 150]·W', async () => {
    for (const options of [
      { bits: 'nf4', blockSize: 64, doubleQuant: true },
      { bits: 'int8', blockSize: 'channel' },
    ] as const) {
      const q = lr.quantizeData(values(150 * 200, 21, 0.2), 150, 200, options);
      const deq = lr.dequantizeData(q);
      const w = lr.QuantizedWeight.fromData(q, 'webgpu');
      for (const transpose of [true, false]) {
        const k = transpose ? 200 : 150;
        const xv = values(130 * k, 22);
        // x is read through a transposed view: strides [1, 130]
        const xt = lr.tensor(xv, { shape: [130, k], device: 'webgpu' }).T.contiguous().T;
        const y = lr.quantizedMatmul(xt, w, { transpose });
        const want = refMatmul(deq, 150, 200, xv, 130, transpose);
        expect(maxRelErr((await y.data()) as Float32Array, want)).toBeLessThan(1e-5);
        y.dispose();
      }
      w.dispose();
    }
  }, 180_000);

  it('the quantize kernel agrees with the host definition up to float32 ties (nf4, int8, double quant)', async () => {
    for (const options of [
      { bits: 'nf4', blockSize: 64 },
      { bits: 'nf4', blockSize: 16, doubleQuant: true, scaleMean: 0.04 },
      { bits: 'int8', blockSize: 'channel' },
      { bits: 'int8', blockSize: 7, doubleQuant: true, scaleMean: 0.001 },
    ] as const) {
      const [rows, cols] = [37, 301];
      const wv = values(rows * cols, 31, 0.1);
      const host = lr.quantizeData(wv, rows, cols, options);
      const hostDeq = lr.dequantizeData(host);
      const w = lr.QuantizedWeight.quantizeNow(
        lr.tensor(wv, { shape: [rows, cols], device: 'webgpu' }),
        options,
      );
      expect(w.device).toBe('webgpu');
      const gpuDeq = (await lr.dequantize(w).data()) as Float32Array;
      // the same codes but where float32 and float64 round differently: a handful at most, each as near to x
      let differ = 0;
      let worse = 0;
      for (let i = 0; i < wv.length; i++) {
        if (gpuDeq[i] === hostDeq[i]) continue;
        differ++;
        worse = Math.max(worse, Math.abs(gpuDeq[i] - wv[i]) - Math.abs(hostDeq[i] - wv[i]));
      }
      expect(differ).toBeLessThanOrEqual(Math.ceil(wv.length * 0.002));
      expect(worse).toBeLessThan(1e-4);
      if (!options.doubleQuant) {
        const [hs, gs] = [host.scales as Float32Array, (await w.scales.data()) as Float32Array];
        for (let i = 0; i < hs.length; i++) expect(Math.abs(gs[i] - hs[i])).toBeLessThanOrEqual(2e-7 * hs[i]);
      }
      w.dispose();
    }
  }, 180_000);
});
