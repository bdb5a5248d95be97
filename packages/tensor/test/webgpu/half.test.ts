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
});
