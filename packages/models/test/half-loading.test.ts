import '@lowrank/autograd';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad } from '@lowrank/autograd';
import {
  initializers,
  Linear,
  modelFootprint,
  parseSafetensors,
  QuantizedEmbedding,
  QuantizedLinear,
} from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { type AutoCausalLM, AutoModelForCausalLM } from '../src/auto.js';
import type { LoadProgress } from '../src/half-load.js';
import { fromPretrained, AutoModelForCausalLM as NodeAuto } from '../src/node.js';
import { logitsOf } from './model-values.js';

/**
 * Loading with the frozen base kept in 16 bits (issue #17 item 2), on the Llama-family fixtures
 * (test/fixtures: an f32 Llama, a bf16 sharded Llama 3, an f16 Qwen2): against the float32 load
 * of the same files. A file already in the dtype is kept bit for bit (logits within float32
 * summation order of the f32 load); an f32 file loaded as f16 is rounded to nearest (each
 * weight within half an f16 ulp of its f32 value), its logits within the bound derived below.
 */
const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const reader = (dir: string) => async (name: string) => {
  try {
    return new Uint8Array(readFileSync(join(dir, name)));
  } catch {
    return null;
  }
};

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const halfLayers = (m: AutoCausalLM) =>
  m
    .namedModules()
    .filter(([, x]) => x instanceof QuantizedLinear)
    .map(([n, x]) => [n, x as QuantizedLinear] as const);

describe('loading a checkpoint with a 16-bit base', () => {
  it('an f32 Llama as f16: weights rounded to nearest, base bytes halved, logits within the rounding bound', async () => {
    const dir = `${fixtures}peft-llama-tiny/base`;
    const before = lr.memory().quantized.f16?.bytes ?? 0;
    const progress: LoadProgress[] = [];
    const h = await AutoModelForCausalLM.fromFiles(reader(dir), {
      dtype: 'f16',
      onLoadProgress: (p) => progress.push(p),
    });
    const f = await AutoModelForCausalLM.fromFiles(reader(dir));
    const layers = halfLayers(h);
    expect(layers.length).toBe(14); // q, k, v, o, gate, up, down in each of 2 layers (the head is tied)
    expect(h.namedModules().some(([, m]) => m instanceof Linear)).toBe(false);
    // progress: once per tensor of the file, in order, 16-bit for exactly the Linear weights
    const file = parseSafetensors(readFileSync(join(dir, 'model.safetensors'))).tensors;
    expect(progress.map((p) => p.name)).toEqual(Object.keys(file));
    expect(progress.map((p) => p.done)).toEqual(progress.map((_, i) => i + 1));
    expect(progress.every((p) => p.total === progress.length)).toBe(true);
    expect(progress.filter((p) => p.storedAs === 'f16').length).toBe(15); // and the tied table (tied-half.test.ts)
    // each weight is the f16 value nearest its f32 value: within half an ulp of 2^(e−10)
    let worst = 0;
    for (const [name, layer] of layers) {
      const w = (await lr.dequantize(layer.weight).data()) as Float32Array;
      const x = file[`${name}.weight`].data as Float32Array;
      for (let i = 0; i < x.length; i++) {
        const ulp = 2 ** (Math.max(-14, Math.floor(Math.log2(Math.abs(x[i])))) - 10);
        worst = Math.max(worst, Math.abs(w[i] - x[i]) / (ulp / 2));
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(worst).toBeGreaterThan(0.5); // the values were rounded, not kept
    // memory: the base's bytes are half of float32 (every width is even)
    const mem = lr.memory().quantized.f16;
    const table = (h.getSubmodule('model.embed_tokens') as QuantizedEmbedding).weight;
    const f32Bytes = layers.reduce((n, [, l]) => n + l.weight.f32Bytes, table.f32Bytes);
    expect((mem?.bytes ?? 0) - before).toBe(f32Bytes / 2);
    expect(mem?.f32Bytes).toBeGreaterThanOrEqual(f32Bytes);
    // logits: every weight moves by at most 2^−11 of itself, so each of the 7 matmuls on a
    // token's path (4 in attention, 3 in the MLP, per layer; the residual stream adds them up)
    // moves its output by at most 2^−11 of Σ|w·x|; over 2 layers a bound of 14·2^−11 ≈ 6.8e-3
    // of the logits' scale holds with room (random signs make typical errors far smaller: 1.8e-4 here)
    const ids = lr.tensor([[1, 5, 9, 200, 17, 3, 400]], { dtype: 'int32' });
    const [lh, lf] = [await logitsOf(h, ids), await logitsOf(f, ids)];
    const scale = maxAbs(lf);
    expect(maxDiff(lh, lf)).toBeLessThan(16 * 2 ** -11 * scale); // + the tied table's two uses
    expect(maxDiff(lh, lf)).toBeGreaterThan(0); // f16 rounding does show
    // and exactly the model whose float32 weights are those f16 values (the kernel decodes what was stored)
    for (const [name, w16] of [
      ...layers.map(([n, l]) => [n, l.weight] as const),
      ['model.embed_tokens', table] as const,
    ]) {
      const w = lr.dequantize(w16);
      noGrad(() => f.getParameter(`${name}.weight`).copy_(w));
      w.dispose();
    }
    expect(maxDiff(lh, await logitsOf(f, ids))).toBeLessThan(1e-5 * scale);
    ids.dispose();
    h.dispose();
    f.dispose();
    expect(lr.memory().quantized.f16?.bytes ?? 0).toBe(before);
  });

  it('a bf16 sharded Llama 3 as bf16 and an f16 Qwen2 as f16 keep the file’s values bit for bit', async () => {
    for (const [name, dtype] of [
      ['llama3-bf16-sharded', 'bf16'],
      ['qwen2-f16-dynamic', 'f16'],
    ] as const) {
      const dir = `${fixtures}${name}/base`;
      const h = await AutoModelForCausalLM.fromFiles(reader(dir), { dtype });
      const f = await AutoModelForCausalLM.fromFiles(reader(dir)); // widened exactly to float32
      const layers = halfLayers(h);
      expect(layers.length).toBe(14);
      for (const [n, layer] of layers) {
        expect(layer.format).toBe(dtype);
        const w = (await lr.dequantize(layer.weight).data()) as Float32Array;
        expect(Array.from(w)).toEqual(
          Array.from((await f.getParameter(`${n}.weight`).data()) as Float32Array),
        );
        expect(layer.weight.bytes * 2).toBe(layer.weight.f32Bytes);
        expect(layer.bias === null).toBe(
          name === 'llama3-bf16-sharded' ? false : n.includes('o_proj') || n.includes('mlp'),
        );
      }
      // the embedding table is 16-bit too (rows decoded as gathered; a tied one: tied-half.test.ts)
      const table = h.getSubmodule('model.embed_tokens');
      expect(table).toBeInstanceOf(QuantizedEmbedding);
      if (name === 'llama3-bf16-sharded') {
        expect(table).toBeInstanceOf(QuantizedEmbedding);
        const e = table as QuantizedEmbedding;
        expect(e.format).toBe('bf16');
        // the whole base (14 Linear weights and the table) counted in 16 bits: half its float32 size
        const fp = modelFootprint(h);
        expect(fp.byType.bf16).toBe(fp.quantized.bytes);
        expect(fp.quantized.bytes * 2).toBe(fp.quantized.f32Bytes);
        expect(fp.quantized.f32Bytes).toBe(
          4 *
            (e.numEmbeddings * e.embeddingDim +
              layers.reduce((n, [, l]) => n + l.inFeatures * l.outFeatures, 0)),
        );
        const all = lr.arange(0, e.numEmbeddings, 1, { dtype: 'int32' });
        const rows = e.forward(all);
        const want = (await f.getParameter('model.embed_tokens.weight').data()) as Float32Array;
        expect(Array.from((await rows.data()) as Float32Array)).toEqual(Array.from(want));
        rows.dispose();
        all.dispose();
      }
      const ids = lr.tensor([[1, 5, 9, 200, 17, 3]], { dtype: 'int32' });
      const [lh, lf] = [await logitsOf(h, ids), await logitsOf(f, ids)];
      // the same weights: only float32 summation order may differ (panels vs one matmul)
      expect(maxDiff(lh, lf)).toBeLessThan(1e-5 * maxAbs(lf));
      ids.dispose();
      h.dispose();
      f.dispose();
    }
  });

  it('an F16 file as bf16 is rounded to nearest even; a bad dtype is refused', async () => {
    const dir = `${fixtures}qwen2-f16-dynamic/base`;
    const h = await AutoModelForCausalLM.fromFiles(reader(dir), { dtype: 'bf16' });
    const file = parseSafetensors(readFileSync(join(dir, 'model.safetensors'))).tensors;
    const [name, layer] = halfLayers(h)[0];
    const w = (await lr.dequantize(layer.weight).data()) as Float32Array;
    const x = file[`${name}.weight`].data as Float32Array;
    expect(Array.from(w)).toEqual(Array.from(x, (v) => lr.bf16Value(lr.bf16Bits(v))));
    expect(w.some((v, i) => v !== x[i])).toBe(true);
    h.dispose();
    await expect(
      AutoModelForCausalLM.fromFiles(reader(dir), { dtype: 'f8' as unknown as 'f16' }),
    ).rejects.toThrow(/dtype must be 'f32', 'f16' or 'bf16', got 'f8'/);
  });

  it('fromPretrained(dir, { dtype }) from the Node entry point; quantize with dtype refused (GPT-2: gpt2-half.test.ts)', async () => {
    const dir = `${fixtures}llama3-bf16-sharded/base`;
    const m = await NodeAuto.fromPretrained(dir, { dtype: 'bf16' });
    expect(halfLayers(m).map(([, l]) => l.format)).toEqual(Array(14).fill('bf16'));
    expect(m.nameOrPath).toBe(dir);
    m.dispose();
    await expect(NodeAuto.fromPretrained(dir, { dtype: 'f16', quantize: { bits: 'nf4' } })).rejects.toThrow(
      /quantize \(nf4\) and dtype 'f16' both choose how the base is stored/,
    );
    // GPT-2's own fromPretrained names the class to use for a Llama directory
    await expect(fromPretrained(dir, { dtype: 'f16' })).rejects.toThrow(
      /holds a llama model, not GPT-2: load it with AutoModelForCausalLM\.fromPretrained/,
    );
  });

  it('withoutInit builds layers without drawing: zeros, and the generator untouched', async () => {
    lr.manualSeed(7);
    const a = lr.defaultGenerator().nextFloat();
    lr.manualSeed(7);
    const layer = initializers.withoutInit(() => new Linear(6, 5));
    expect(lr.defaultGenerator().nextFloat()).toBe(a);
    expect(maxAbs((await layer.weight.data()) as Float32Array)).toBe(0);
    const drawn = new Linear(6, 5);
    expect(maxAbs((await drawn.weight.data()) as Float32Array)).toBeGreaterThan(0);
    layer.dispose();
    drawn.dispose();
  });
});
