import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { maxRelErr, refMatmul, values } from '../quant-reference.js';
import { initWebGPU } from './helpers.js';

/**
 * 16-bit weights on WebGPU (unpack2x16float for f16, a shift for bf16, in the tile loads): the
 * decoded matrix bit for bit against the host decoding (../half.test.ts checks that against the
 * IEEE definitions), including f16 subnormals, and the matmul against float64 loops, both
 * orientations, over a shape that spans several 64×64 tiles with odd sides.
 */
const skip = await initWebGPU();

describe.skipIf(skip !== null)(`16-bit weights on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('dequantize gives the host values exactly (f16 with subnormals, bf16)', async () => {
    // every 37th f16 pattern up to 0x7bff, both signs: normals, subnormals (< 0x0400) and ±0
    const bits = Uint16Array.from({ length: 7 * 129 }, (_, i) => ((i * 37) % 0x7c00) | (i % 2 ? 0x8000 : 0));
    for (const format of ['f16', 'bf16'] as const) {
      const q = lr.halfData(format, bits, 7, 129);
      const w = lr.QuantizedWeight.fromData(q, 'webgpu');
      const t = lr.dequantize(w);
      expect(t.device).toBe('webgpu');
      expect(Array.from((await t.data()) as Float32Array)).toEqual(Array.from(lr.dequantizeData(q)));
      t.dispose();
      w.dispose();
    }
  });

  it('quantizedMatmul equals x·W in float64 on the decoded weights (both orientations, 70×131)', async () => {
    for (const [format, transpose] of [
      ['f16', true],
      ['bf16', false],
    ] as const) {
      const [rows, cols, m] = [70, 131, 5];
      const q = lr.quantizeData(values(rows * cols, 21, 0.5), rows, cols, { bits: format });
      const w = lr.QuantizedWeight.fromData(q, 'webgpu');
      const k = transpose ? cols : rows;
      const xv = values(m * k, 22);
      const y = lr.quantizedMatmul(lr.tensor(xv, { shape: [m, k], device: 'webgpu' }), w, { transpose });
      const want = refMatmul(lr.dequantizeData(q), rows, cols, xv, m, transpose);
      expect(maxRelErr((await y.data()) as Float32Array, want)).toBeLessThan(k * 2 ** -22);
      expect(w.bytes).toBe(rows * Math.ceil(cols / 2) * 4);
      y.dispose();
      w.dispose();
    }
  });

  it('quantizedEmbedding gathers and decodes rows on the GPU like the host (bf16, odd width)', async () => {
    const q = lr.quantizeData(values(9 * 33, 41), 9, 33, { bits: 'bf16' });
    const deq = lr.dequantizeData(q);
    const w = lr.QuantizedWeight.fromData(q, 'webgpu');
    const idv = [8, 0, 4, 4];
    const e = lr.quantizedEmbedding(w, lr.tensor(idv, { dtype: 'int32', device: 'webgpu' }));
    expect(e.device).toBe('webgpu');
    expect(Array.from((await e.data()) as Float32Array)).toEqual(
      idv.flatMap((r) => Array.from(deq.subarray(r * 33, (r + 1) * 33))),
    );
    e.dispose();
    w.dispose();
  });

  it('quantizedEmbedding gathers nf4/int8 rows on the GPU = dequantize-then-gather on the CPU (odd sizes)', async () => {
    // 11 rows of 37: 37 is no multiple of 8 (nf4 codes a word) nor 4 (int8), nor of the blocks
    const [rows, cols] = [11, 37];
    const idv = [10, 0, 7, 7, 3, 10, 1];
    for (const options of [
      { bits: 'nf4', blockSize: 16 },
      { bits: 'nf4', blockSize: 64 },
      { bits: 'int8', blockSize: 'channel' },
      { bits: 'int8', blockSize: 5 },
    ] as const) {
      const q = lr.quantizeData(values(rows * cols, 43), rows, cols, options);
      const deq = lr.dequantizeData(q); // the host decoding (../half.test.ts: = the paper's definitions)
      const want = idv.flatMap((r) => Array.from(deq.subarray(r * cols, (r + 1) * cols)));
      const w = lr.QuantizedWeight.fromData(q, 'webgpu');
      const ids = lr.tensor([...idv, 2], { dtype: 'int32', shape: [2, 4], device: 'webgpu' });
      const e = lr.quantizedEmbedding(w, ids);
      expect(e.device).toBe('webgpu');
      expect(e.shape).toEqual([2, 4, cols]);
      const got = Array.from((await e.data()) as Float32Array);
      expect(got.slice(0, idv.length * cols)).toEqual(want);
      expect(got.slice(idv.length * cols)).toEqual(Array.from(deq.subarray(2 * cols, 3 * cols)));
      for (const t of [e, ids, w]) t.dispose();
    }
  });

  it('quantizeNow on the GPU rounds to the same f16/bf16 patterns as the host (ties, subnormal f16 range, NaN, ±Inf)', async () => {
    const g = new lr.Generator(17);
    const xs: number[] = [
      0,
      -0,
      65504,
      65520,
      -70000,
      Infinity,
      -Infinity,
      Number.NaN,
      2 ** -25,
      3 * 2 ** -25,
      1e-6,
    ];
    for (let i = 0; i < 300; i++) {
      const h = Math.floor(g.nextFloat() * 0x7bff);
      xs.push((lr.f16Value(h) + lr.f16Value(h + 1)) / 2); // an exact f16 tie
      const b = Math.floor(g.nextFloat() * 0x7f7f);
      xs.push(lr.bf16Value(b) + (lr.bf16Value(b + 1) - lr.bf16Value(b)) / 2); // an exact bf16 tie
      xs.push((g.nextFloat() * 2 - 1) * 100);
    }
    const data = Float32Array.from(xs);
    const cols = 7;
    const rows = Math.floor(data.length / cols);
    const x = data.subarray(0, rows * cols);
    for (const bits of ['f16', 'bf16'] as const) {
      const q = lr.QuantizedWeight.quantizeNow(lr.tensor(x, { shape: [rows, cols], device: 'webgpu' }), {
        bits,
      });
      expect(q.device).toBe('webgpu');
      const codes = (await q.codes.data()) as Int32Array;
      // the host codes, with f16 overflow taken as ±Infinity (the host refuses it; the kernel cannot)
      const enc = bits === 'f16' ? lr.f16Bits : lr.bf16Bits;
      const want = new Int32Array(rows * Math.ceil(cols / 2));
      for (let i = 0; i < x.length; i++) {
        const [r, c] = [Math.floor(i / cols), i % cols];
        want[r * Math.ceil(cols / 2) + (c >> 1)] |= enc(x[i]) << (16 * (c & 1));
      }
      expect(Array.from(codes)).toEqual(Array.from(want));
      q.dispose();
    }
  });
});
