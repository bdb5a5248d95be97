import { noGrad } from '@lowrank/autograd';
import { modelFootprint, type QuantizedLinear, quantizeModel } from '@lowrank/nn';
import {
  bf16Bits,
  bf16Value,
  f16Bits,
  f16Value,
  fromTypedArray,
  Generator,
  randint,
  tidy,
} from '@lowrank/tensor';
import { describe, expect, it, vi } from 'vitest';
import { applyLora, type LoraLinear } from '../src/index.js';
import { maxAbs, maxAbsDiff, TinyNet } from './helpers.js';

/**
 * LoRA over a frozen base kept in 16 bits (issue #17 item 2): `quantizeModel` with `bits: 'f16'`
 * or `'bf16'` stores each Linear/Conv1D weight as 16-bit patterns decoded inside the matmul;
 * LoRA's A and B stay float32. References: the float32 net holding the decoded weights
 * (outputs), central finite differences (gradients into A and B through the 16-bit base).
 */
const CONFIG = {
  r: 2,
  loraAlpha: 4,
  targetModules: ['fc', 'c_attn', 'c_proj'],
  initLoraWeights: false,
  seed: 3,
};

async function pair(bits: 'f16' | 'bf16', seed: number): Promise<[TinyNet, TinyNet]> {
  const q = new TinyNet(11, 6, 5, 3, seed);
  const f = new TinyNet(11, 6, 5, 3, seed);
  const report = await quantizeModel(q, { bits, skip: ['lm_head'] });
  expect(report.quantized).toEqual(['fc', 'c_attn', 'c_proj']);
  let bytes = 0;
  for (const name of report.quantized) {
    const layer = q.getSubmodule(name) as QuantizedLinear;
    bytes += layer.outFeatures * Math.ceil(layer.inFeatures / 2) * 4; // two values a word, odd widths padded
    const w = layer.dequantizedWeight();
    noGrad(() => f.getParameter(`${name}.weight`).copy_(w));
    w.dispose();
  }
  expect(report.bytes).toBe(bytes);
  expect(report.bytes).toBeLessThan(0.6 * report.f32Bytes);
  return [q, f];
}

describe('LoRA on a 16-bit base (CPU)', () => {
  it('forward equals the float32 net with the decoded weights; the footprint counts the base under its format', async () => {
    for (const bits of ['f16', 'bf16'] as const) {
      const [q, f] = await pair(bits, 1);
      applyLora(q, CONFIG);
      applyLora(f, CONFIG);
      const ids = randint(0, 11, [2, 4], { generator: new Generator(5) });
      const [yq, yf] = [q.forward(ids), f.forward(ids)];
      expect(await maxAbsDiff(yq, yf)).toBeLessThan(1e-5);
      expect(await maxAbs(yq)).toBeGreaterThan(0);
      const fp = modelFootprint(q);
      expect(fp.byType[bits]).toBe(fp.quantized.bytes);
      expect(fp.quantized.bytes).toBeLessThan(0.6 * fp.quantized.f32Bytes);
      for (const t of [yq, yf]) t.dispose();
      q.dispose();
      f.dispose();
    }
  });

  it('gradients into A and B through the 16-bit base match central differences', async () => {
    for (const bits of ['f16', 'bf16'] as const) {
      const [q, f] = await pair(bits, 2);
      f.dispose();
      const lora = applyLora(q, CONFIG);
      q.train();
      const ids = randint(0, 11, [2, 3], { generator: new Generator(9) });
      const loss = () => tidy(() => q.forward(ids).sin().sum());
      const l = loss();
      l.backward();
      l.dispose();
      const params = lora.trainableParameters();
      expect(params.length).toBe(6);
      let checked = 0;
      for (const p of params) {
        const analytic = (await p.grad!.data()) as Float32Array;
        const values = (await p.data()) as Float32Array;
        for (let i = 0; i < values.length; i += 3) {
          const eps = 1e-2;
          const at = async (v: number) => {
            const next = values.slice();
            next[i] = v;
            noGrad(() => tidy(() => void p.copy_(fromTypedArray(next, p.shape))));
            const t = loss();
            const out = (await t.item()) as number;
            t.dispose();
            return out;
          };
          const numeric = ((await at(values[i] + eps)) - (await at(values[i] - eps))) / (2 * eps);
          await at(values[i]);
          // central differences in float32: O(eps²) truncation plus rounding of the loss / eps
          expect(Math.abs(numeric - analytic[i])).toBeLessThan(2e-3 + 1e-2 * Math.abs(analytic[i]));
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(10);
      q.dispose();
    }
  });

  it('merge rounds W + ΔW to the base format (nearest even, as the host rounds it)', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    for (const bits of ['f16', 'bf16'] as const) {
      const [q, f] = await pair(bits, 4);
      f.dispose();
      const lora = applyLora(q, CONFIG);
      const fc = q.getSubmodule('fc') as LoraLinear;
      const base = fc.base_layer as QuantizedLinear;
      const w0 = (await base.dequantizedWeight().data()) as Float32Array;
      const dw = (await tidy(() => fc.deltaWeight('default')).data()) as Float32Array;
      lora.merge();
      const merged = (fc.base_layer as QuantizedLinear).dequantizedWeight();
      expect((fc.base_layer as QuantizedLinear).format).toBe(bits);
      const round =
        bits === 'f16' ? (v: number) => f16Value(f16Bits(v)) : (v: number) => bf16Value(bf16Bits(v));
      const want = Array.from(w0, (v, i) => round(Math.fround(v + dw[i])));
      expect(Array.from((await merged.data()) as Float32Array)).toEqual(want);
      expect(want.some((v, i) => v !== Math.fround(w0[i] + dw[i]))).toBe(true); // rounding did happen
      merged.dispose();
      q.dispose();
    }
    warn.mockRestore();
  });
});
