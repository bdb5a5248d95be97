import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../src/index.js';
import { maxRelErr, quantCase, refMatmul, values } from './quant-reference.js';

/**
 * NF4 / int8 weight quantization (issue #18) against reference/quant-reference.json, which
 * reference/make_quant_reference.py writes from the QLoRA paper's definitions (NF4 values from
 * the normal quantiles, block absmax, double quantization, packing); and the quantized matmul
 * kernel against float64 loops over the dequantized matrix.
 */

interface RefCase {
  name: string;
  format: lr.QuantFormat;
  rows: number;
  cols: number;
  blockSize: number;
  doubleQuant: boolean;
  weights: number[];
  codes: number[];
  scales: number[];
  words: number[];
  dequant: number[];
  scaleMean?: number;
  scaleSteps?: number[];
  scaleWords?: number[];
  dequantScales?: number[];
}
const REF = JSON.parse(
  readFileSync(new URL('./reference/quant-reference.json', import.meta.url), 'utf8'),
) as { nf4FromDefinition: number[]; nf4Paper: number[]; cases: RefCase[] };

const u32 = (a: Int32Array) => Array.from(a, (w) => w >>> 0);

describe('NF4 code values', () => {
  it('are the paper table, and its quantile definition within 5e-7', () => {
    expect(Array.from(lr.NF4_VALUES)).toEqual(REF.nf4Paper.map(Math.fround));
    for (let i = 0; i < 16; i++)
      expect(Math.abs(lr.NF4_VALUES[i] - REF.nf4FromDefinition[i])).toBeLessThan(5e-7);
    expect(lr.NF4_VALUES[7]).toBe(0);
    expect([lr.NF4_VALUES[0], lr.NF4_VALUES[15]]).toEqual([-1, 1]);
  });
});

describe('quantizeData / dequantizeData against the Python reference', () => {
  for (const c of REF.cases) {
    it(c.name, async () => {
      const q = lr.quantizeData(Float32Array.from(c.weights), c.rows, c.cols, {
        bits: c.format,
        blockSize: c.blockSize,
        doubleQuant: c.doubleQuant,
      });
      expect(q.blockSize).toBe(c.blockSize);
      expect(u32(q.codes)).toEqual(c.words);
      if (c.doubleQuant) {
        expect(q.scaleMean).toBe(c.scaleMean);
        expect(Array.from(q.steps!)).toEqual(c.scaleSteps);
        expect(u32(q.scales as Int32Array)).toEqual(c.scaleWords);
      } else {
        expect(Array.from(q.scales)).toEqual(c.scales);
      }
      const deq = lr.dequantizeData(q);
      expect(Array.from(deq)).toEqual(c.dequant);
      // the kernel decodes the same values
      const w = lr.QuantizedWeight.fromData(q, 'cpu');
      const t = lr.dequantize(w);
      expect(Array.from((await t.data()) as Float32Array)).toEqual(c.dequant);
      t.dispose();
      w.dispose();
    });
  }

  it('double quantization centred by a given mean: the reference mean reproduces the reference', () => {
    const c = REF.cases.find((k) => k.doubleQuant)!;
    const q = lr.quantizeData(Float32Array.from(c.weights), c.rows, c.cols, {
      bits: c.format,
      blockSize: c.blockSize,
      doubleQuant: true,
      scaleMean: c.scaleMean,
    });
    expect(u32(q.scales as Int32Array)).toEqual(c.scaleWords);
    // another centre gives other codes, and the mean it was given
    const shifted = lr.quantizeData(Float32Array.from(c.weights), c.rows, c.cols, {
      bits: c.format,
      blockSize: c.blockSize,
      doubleQuant: true,
      scaleMean: 0,
    });
    expect(shifted.scaleMean).toBe(0);
    expect(u32(shifted.scales as Int32Array)).not.toEqual(c.scaleWords);
  });

  it('quantizeNow (the CPU quantize kernel) equals quantizeData', async () => {
    for (const c of REF.cases) {
      const options = {
        bits: c.format,
        blockSize: c.blockSize,
        doubleQuant: c.doubleQuant,
        scaleMean: c.scaleMean,
      };
      const w = lr.QuantizedWeight.quantizeNow(
        lr.tensor(Float32Array.from(c.weights), { shape: [c.rows, c.cols] }),
        options,
      );
      expect(u32((await w.codes.data()) as Int32Array)).toEqual(c.words);
      const t = lr.dequantize(w);
      expect(Array.from((await t.data()) as Float32Array)).toEqual(c.dequant);
      t.dispose();
      w.dispose();
    }
  });

  it('block absmax: each block maps its largest |value| to ±1 (nf4) or ±127 (int8), an all-zero block to 0', () => {
    const data = Float32Array.from([0.1, -0.4, 0.2, 0, 0, 0, 3, 1.5]);
    const nf = lr.quantizeData(data, 2, 4, { bits: 'nf4', blockSize: 2 });
    expect(Array.from(nf.scales)).toEqual([0.4, 0.2, 0, 3].map(Math.fround));
    const deq = lr.dequantizeData(nf);
    expect([deq[1], deq[2], deq[4], deq[5], deq[6]]).toEqual([-0.4, 0.2, 0, 0, 3].map(Math.fround));
    expect(deq[0]).toBeCloseTo(0.4 * lr.NF4_VALUES[10], 6); // 0.25 → nearest NF4 value 0.2461
    const i8 = lr.quantizeData(data, 2, 4, { bits: 'int8', blockSize: 'channel' });
    expect(i8.blockSize).toBe(4);
    expect(Array.from(i8.scales)).toEqual([0.4 / 127, 3 / 127].map(Math.fround));
    expect(Array.from(lr.dequantizeData(i8)).map((v) => Math.round(v * 1e4) / 1e4)).toEqual([
      0.1008, -0.4, 0.2016, 0, 0, 0, 3, 1.5118,
    ]);
  });

  it('refuses non-finite weights, bad options and mismatched sizes', () => {
    expect(() => lr.quantizeData(Float32Array.from([1, Number.NaN]), 1, 2, { bits: 'nf4' })).toThrow(
      /quantize: value at \[0, 1\] is NaN/,
    );
    expect(() => lr.quantizeData(new Float32Array(4), 1, 4, { bits: 'nf4', blockSize: 0 })).toThrow(
      /blockSize must be a positive integer/,
    );
    expect(() => lr.quantizeData(new Float32Array(3), 1, 4, { bits: 'int8' })).toThrow(
      /expected 1·4 = 4 values, got 3/,
    );
    // @ts-expect-error: a format that does not exist
    expect(() => lr.quantizeData(new Float32Array(4), 1, 4, { bits: 'fp4' })).toThrow(
      /bits must be one of 'nf4', 'int8', 'f16', 'bf16', got 'fp4'/,
    );
  });
});

describe('quantizedMatmul (CPU)', () => {
  it('equals x·dequant(W)ᵀ and x·dequant(W) in float64 over shapes not divisible by the block (property)', async () => {
    await fc.assert(
      fc.asyncProperty(quantCase(90), async (c) => {
        const wv = values(c.rows * c.cols, c.seed, 0.3);
        const q = lr.quantizeData(wv, c.rows, c.cols, c);
        const deq = lr.dequantizeData(q);
        const w = lr.QuantizedWeight.fromData(q, 'cpu');
        const k = c.transpose ? c.cols : c.rows;
        const xv = values(c.m * k, c.seed + 1);
        const x = lr.tensor(xv, { shape: [c.m, k] });
        const y = lr.quantizedMatmul(x, w, { transpose: c.transpose });
        expect(y.shape).toEqual([c.m, c.transpose ? c.rows : c.cols]);
        const want = refMatmul(deq, c.rows, c.cols, xv, c.m, c.transpose);
        expect(maxRelErr((await y.data()) as Float32Array, want)).toBeLessThan(1e-5);
        x.dispose();
        y.dispose();
        w.dispose();
      }),
      { numRuns: 60 },
    );
  });

  it('takes batched and strided inputs: x [2, 3, K] and a transposed view', async () => {
    const wv = values(5 * 70, 3);
    const w = await lr.QuantizedWeight.quantize(lr.tensor(wv, { shape: [5, 70] }), { bits: 'nf4' });
    const deq = (await lr.dequantize(w).data()) as Float32Array;
    const xv = values(6 * 70, 4);
    const x = lr.tensor(xv, { shape: [70, 2, 3] }).permute([1, 2, 0]); // [2, 3, 70], strided
    const y = lr.quantizedMatmul(x, w);
    expect(y.shape).toEqual([2, 3, 5]);
    const xc = (await x.contiguous().data()) as Float32Array;
    expect(maxRelErr((await y.data()) as Float32Array, refMatmul(deq, 5, 70, xc, 6, true))).toBeLessThan(
      1e-5,
    );
    w.dispose();
  });

  it('needs no scratch wider than 64 columns: the peak is the output, in both orientations', async () => {
    // W [64, 1024] NF4; x·W (the backward's d input) once summed [m, 1024] products of 64-row
    // panels, a transient as large as the output beside it (peak 1.25× the output here)
    const w = await lr.QuantizedWeight.quantize(lr.tensor(values(64 * 1024, 5), { shape: [64, 1024] }), {
      bits: 'nf4',
    });
    for (const transpose of [false, true]) {
      const x = lr.tensor(values(256 * (transpose ? 1024 : 64), 6), { shape: [256, transpose ? 1024 : 64] });
      const before = lr.memory().numBytes;
      lr.resetPeakMemory();
      const y = lr.quantizedMatmul(x, w, { transpose });
      const outBytes = y.size * 4;
      expect(outBytes).toBe(256 * (transpose ? 64 : 1024) * 4);
      // the decoded panel (64 × k) and one [256, 64] product at most, next to the output
      const scratch = (64 * (transpose ? 1024 : 64) + 256 * 64) * 4;
      expect(lr.peakMemory() - before).toBeLessThanOrEqual(Math.max(outBytes, scratch) + 1024);
      y.dispose();
      x.dispose();
    }
    w.dispose();
  });

  it('refuses a wrong inner dimension, requiresGrad on the weight and a disposed weight', async () => {
    const w = await lr.QuantizedWeight.quantize(lr.randn([4, 10]), { bits: 'int8' });
    expect(() => lr.quantizedMatmul(lr.ones([2, 4]), w)).toThrow(
      /quantizedMatmul: input's last dim must be 10 for x·Wᵀ with W \[4,10\], got \[2,4\]/,
    );
    expect(lr.quantizedMatmul(lr.ones([2, 4]), w, { transpose: false }).shape).toEqual([2, 10]);
    expect(() => w.requiresGrad_()).toThrow(
      /requiresGrad_: a quantized int8 weight \[4,10\] cannot require gradients/,
    );
    expect(w.requiresGrad).toBe(false);
    w.scales.requiresGrad_();
    expect(() => lr.quantizedMatmul(lr.ones([2, 10]), w)).toThrow(
      /quantizedMatmul: the quantized weight is frozen/,
    );
    w.dispose();
    expect(() => lr.quantizedMatmul(lr.ones([2, 10]), w)).toThrow(
      /quantizedMatmul: int8 weight \[4,10\] was disposed/,
    );
  });
});

describe('memory of quantized weights', () => {
  it('counts bytes per format next to float32: nf4 ≤ 0.16×, int8 ≤ 0.27×', async () => {
    const before = lr.quantizedMemory();
    const w = lr.randn([256, 512]);
    const made = [
      await lr.QuantizedWeight.quantize(w, { bits: 'nf4' }),
      await lr.QuantizedWeight.quantize(w, { bits: 'nf4', doubleQuant: true }),
      await lr.QuantizedWeight.quantize(w, { bits: 'int8' }),
      await lr.QuantizedWeight.quantize(w, { bits: 'int8', blockSize: 'channel' }),
    ];
    const f32 = 256 * 512 * 4;
    // codes: 4 or 8 bits a value; scales: 32 bits per 64 values, or 8 bits + 32 per 256 scales
    expect(made.map((q) => q.bytes)).toEqual([
      256 * 64 * 4 + 256 * 8 * 4,
      256 * 64 * 4 + 2048 + 8 * 4,
      256 * 128 * 4 + 256 * 8 * 4,
      256 * 128 * 4 + 256 * 4,
    ]);
    expect(made[0].bytes / f32).toBeLessThanOrEqual(0.16);
    expect(made[1].bytes / f32).toBeLessThanOrEqual(0.13);
    expect(made[2].bytes / f32).toBeLessThanOrEqual(0.27);
    const info = lr.quantizedMemory();
    expect(info.count - before.count).toBe(4);
    expect((info.formats.nf4?.bytes ?? 0) - (before.formats.nf4?.bytes ?? 0)).toBe(
      made[0].bytes + made[1].bytes,
    );
    expect((info.formats.int8?.f32Bytes ?? 0) - (before.formats.int8?.f32Bytes ?? 0)).toBe(2 * f32);
    // memory() reports the same by format, beside the storages it counts
    const mem = lr.memory().quantized;
    expect(mem.nf4.bytes - (before.formats.nf4?.bytes ?? 0)).toBe(made[0].bytes + made[1].bytes);
    expect(mem.int8.f32Bytes - (before.formats.int8?.f32Bytes ?? 0)).toBe(2 * f32);
    for (const q of made) q.dispose();
    expect(lr.quantizedMemory().bytes).toBe(before.bytes);
    expect(lr.memory().quantized.nf4?.count ?? 0).toBe(before.formats.nf4?.count ?? 0);
    w.dispose();
  });
});
