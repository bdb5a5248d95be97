import '@lowrank/autograd';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noGrad } from '@lowrank/autograd';
import { adapterParameters, applyLora, loadAdapterFromBytes } from '@lowrank/lora';
import {
  initializers,
  modelFootprint,
  QuantizedEmbedding,
  QuantizedLinear,
  safetensorsEntries,
} from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { type AutoCausalLM, AutoModelForCausalLM } from '../src/auto.js';
import { generate } from '../src/generate.js';
import { loadWeightsStreaming } from '../src/half-load.js';
import { LlamaForCausalLM } from '../src/llama.js';
import { lmLoss } from '../src/lm-head.js';
import { savePretrained } from '../src/node.js';

/**
 * A tied head in 16 bits (issue #17): `dtype: 'f16'` makes a tied model's embedding table a
 * `QuantizedEmbedding` and the head multiplies by the same 16-bit words, so the whole base is
 * stored once, at half its float32 bytes. Checked on the tied fixtures (peft-llama-tiny in f32,
 * qwen2-f16-dynamic in f16) against float32 loads of the same files: within the f16 rounding
 * bound, and exactly (float32 summation order aside) against the float32 model whose weights are
 * the rounded values.
 */
const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const reader = (dir: string) => async (name: string) => {
  try {
    return new Uint8Array(readFileSync(join(dir, name)));
  } catch {
    return null;
  }
};

async function values(t: lr.Tensor): Promise<Float32Array> {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function logitsAndLoss(model: AutoCausalLM, ids: lr.Tensor): Promise<[Float32Array, number]> {
  model.eval();
  const { logits, loss } = noGrad(() => {
    const out = model.forward(ids, { labels: ids });
    return { logits: out.logits, loss: out.loss as lr.Tensor };
  });
  return Promise.all([
    values(logits),
    loss.item().then((v) => {
      loss.dispose();
      return v as number;
    }),
  ]);
}

/** Every 16-bit Linear back to float32 (the tables left as they are). */
function dequantizeLinears(model: AutoCausalLM): void {
  for (const [name, m] of model.namedModules())
    if (m instanceof QuantizedLinear) {
      model.setSubmodule(name, m.toFloat());
      m.weight.dispose();
    }
}

/** Copies every 16-bit weight of `half` (dequantized) into the float32 model `f`. */
function copyRounded(half: AutoCausalLM, f: AutoCausalLM): void {
  for (const [name, m] of half.namedModules()) {
    if (!(m instanceof QuantizedLinear || m instanceof QuantizedEmbedding)) continue;
    const w = m instanceof QuantizedLinear ? m.dequantizedWeight() : lr.dequantize(m.weight);
    noGrad(() => f.getParameter(`${name}.weight`).copy_(w));
    w.dispose();
  }
}

const webgpuUnavailable = await lr
  .init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => lr.setDefaultDevice('cpu'));

describe('a tied head kept in 16 bits', () => {
  it('peft-llama-tiny (f32, tied) as f16: one 16-bit table for the embedding and the head; logits, loss, LoRA gradients and greedy tokens', async () => {
    const dir = `${fixtures}peft-llama-tiny/base`;
    const before = lr.memory().quantized.f16?.bytes ?? 0;
    const h = (await AutoModelForCausalLM.fromFiles(reader(dir), { dtype: 'f16' })) as LlamaForCausalLM;
    const f = (await AutoModelForCausalLM.fromFiles(reader(dir))) as LlamaForCausalLM;
    expect(h.lm_head).toBeNull();
    const table = h.getSubmodule('model.embed_tokens');
    expect(table).toBeInstanceOf(QuantizedEmbedding);
    const e = table as QuantizedEmbedding;
    expect(e.format).toBe('f16');
    expect(() => h.lmHeadWeight).toThrow(
      /tied head is a f16 QuantizedWeight \[512, 64\].*model\.embed_tokens\.weight/,
    );
    expect(h.device).toBe('cpu');
    // the whole base in f16, the table counted once: half its float32 bytes
    const fp = modelFootprint(h);
    const linears = h.namedModules().filter(([, m]) => m instanceof QuantizedLinear) as [
      string,
      QuantizedLinear,
    ][];
    expect(linears.length).toBe(14);
    const f32 = 4 * (512 * 64 + linears.reduce((n, [, l]) => n + l.inFeatures * l.outFeatures, 0));
    expect(fp.quantized.f32Bytes).toBe(f32);
    expect(fp.quantized.bytes).toBe(f32 / 2);
    expect((lr.memory().quantized.f16?.bytes ?? 0) - before).toBe(f32 / 2);
    // the float32 parameters left are the norms only: 2 a layer and the final one, 64 each
    expect(fp.byType.float32).toBe(4 * 64 * 5);

    const ids = lr.tensor([[1, 5, 9, 200, 17, 3, 400, 33, 2]], { dtype: 'int32' });
    const [lh, lossH] = await logitsAndLoss(h, ids);
    const [lf, lossF] = await logitsAndLoss(f, ids);
    const scale = maxAbs(lf);
    // each weight moves by at most 2^−11 of itself: the bound of half-loading.test.ts (14
    // matmuls on a token's path, 14·2^−11 of the logits' scale) plus the table's two uses, 16·2^−11
    expect(maxDiff(lh, lf)).toBeLessThan(16 * 2 ** -11 * scale);
    expect(maxDiff(lh, lf)).toBeGreaterThan(0);
    expect(Math.abs(lossH - lossF)).toBeLessThan(16 * 2 ** -11 * scale);
    // exactly the float32 model whose weights are the f16 values
    copyRounded(h, f);
    const [lr16, lossR] = await logitsAndLoss(f, ids);
    expect(maxDiff(lh, lr16)).toBeLessThan(1e-5 * scale);
    expect(Math.abs(lossH - lossR)).toBeLessThan(1e-5);
    // the loss of a tied 16-bit head is lmLoss over the logits: the same as the fused float32 one
    const rounded = lr.tensor(lr16).reshape(1, 9, 512);
    const fused = noGrad(() => lmLoss(rounded, ids));
    expect(Math.abs(lossH - ((await fused.item()) as number))).toBeLessThan(1e-5);
    lr.dispose(rounded, fused);

    // greedy tokens with the KV cache: the same as the rounded float32 model's
    const prompt = [1, 5, 9, 200];
    const [gh, gf] = [
      await generate(h, prompt, { maxNewTokens: 12, greedy: true }),
      await generate(f, prompt, { maxNewTokens: 12, greedy: true }),
    ];
    expect(gh.tokens).toEqual(gf.tokens);
    expect(gh.tokens.length).toBe(12);

    // LoRA on the 16-bit base: every adapter gradient as on the rounded float32 model (the
    // head's backward is quantizedMatmul's, x·W with the same words)
    const adapterDir = `${fixtures}peft-llama-tiny/adapter`;
    const config = readFileSync(`${adapterDir}/adapter_config.json`, 'utf8');
    const bytes = new Uint8Array(readFileSync(`${adapterDir}/adapter_model.safetensors`));
    const grads: Map<string, Float32Array>[] = [];
    for (const m of [h, f]) {
      const lora = loadAdapterFromBytes(m, config, bytes, { onWarning: () => {} });
      m.train();
      const loss = m.forward(ids, { labels: ids }).loss as lr.Tensor;
      loss.backward();
      const g = new Map<string, Float32Array>();
      for (const [k, p] of adapterParameters(lora))
        g.set(k, (await (p.grad as lr.Tensor).data()) as Float32Array);
      grads.push(g);
      loss.dispose();
    }
    expect(grads[0].size).toBe(8); // q_proj and v_proj, A and B, in 2 layers
    for (const [k, g] of grads[0]) {
      const w = grads[1].get(k) as Float32Array;
      expect(maxAbs(w), k).toBeGreaterThan(0);
      expect(maxDiff(g, w) / maxAbs(w), k).toBeLessThan(1e-4);
    }
    ids.dispose();
    h.dispose();
    f.dispose();
    expect(lr.memory().quantized.f16?.bytes ?? 0).toBe(before);
  });

  it('qwen2-f16-dynamic (f16 file, tied) as f16: the table kept bit for bit, logits and loss of the float32 load', async () => {
    const dir = `${fixtures}qwen2-f16-dynamic/base`;
    const h = await AutoModelForCausalLM.fromFiles(reader(dir), { dtype: 'f16' });
    const f = await AutoModelForCausalLM.fromFiles(reader(dir)); // widened exactly
    const e = h.getSubmodule('model.embed_tokens') as QuantizedEmbedding;
    expect(e).toBeInstanceOf(QuantizedEmbedding);
    const table = await values(lr.dequantize(e.weight));
    expect(Array.from(table)).toEqual(
      Array.from((await f.getParameter('model.embed_tokens.weight').data()) as Float32Array),
    );
    const ids = lr.tensor([[1, 5, 9, 200, 17, 3]], { dtype: 'int32' });
    const [lh, lossH] = await logitsAndLoss(h, ids);
    const [lf, lossF] = await logitsAndLoss(f, ids);
    expect(maxDiff(lh, lf)).toBeLessThan(1e-5 * maxAbs(lf));
    expect(Math.abs(lossH - lossF)).toBeLessThan(1e-5);
    ids.dispose();
    h.dispose();
    f.dispose();
  });

  it('embeddings: false keeps a tied table and head in float32', async () => {
    const dir = `${fixtures}peft-llama-tiny/base`;
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const m = initializers.withoutInit(() => new LlamaForCausalLM(config));
    const raw = safetensorsEntries(new Uint8Array(readFileSync(join(dir, 'model.safetensors')))).tensors;
    const report = loadWeightsStreaming(m, raw, 'llama', { dtype: 'f16', embeddings: false });
    expect(report.halfLayers.length).toBe(14);
    expect(m.getSubmodule('model.embed_tokens')).not.toBeInstanceOf(QuantizedEmbedding);
    expect(m.lmHeadWeight.shape).toEqual([512, 64]);
    m.dispose();
  });

  it.skipIf(webgpuUnavailable !== null)(
    `on WebGPU: the f16 table gathered and read by the head as on the CPU (logits, loss, LoRA gradients)${webgpuUnavailable ? ` (skipped: ${webgpuUnavailable})` : ''}`,
    async () => {
      const dir = `${fixtures}peft-llama-tiny/base`;
      const adapterDir = `${fixtures}peft-llama-tiny/adapter`;
      const config = readFileSync(`${adapterDir}/adapter_config.json`, 'utf8');
      const bytes = new Uint8Array(readFileSync(`${adapterDir}/adapter_model.safetensors`));
      const runs: { logits: Float32Array; loss: number; grads: Map<string, Float32Array> }[] = [];
      for (const device of ['cpu', 'webgpu'] as const) {
        const m = await AutoModelForCausalLM.fromFiles(reader(dir), { dtype: 'f16', device });
        expect(m.device).toBe(device);
        const ids = lr.tensor([[1, 5, 9, 200, 17, 3, 400, 33, 2]], { dtype: 'int32', device });
        const [logits] = await logitsAndLoss(m, ids);
        const lora = loadAdapterFromBytes(m, config, bytes, { onWarning: () => {} });
        m.train();
        const loss = m.forward(ids, { labels: ids }).loss as lr.Tensor;
        loss.backward();
        const grads = new Map<string, Float32Array>();
        for (const [k, p] of adapterParameters(lora))
          grads.set(k, (await (p.grad as lr.Tensor).data()) as Float32Array);
        runs.push({ logits, loss: (await loss.item()) as number, grads });
        lr.dispose(loss, ids);
        m.dispose();
      }
      const [cpu, gpu] = runs;
      expect(maxDiff(gpu.logits, cpu.logits)).toBeLessThan(1e-4 * maxAbs(cpu.logits));
      expect(Math.abs(gpu.loss - cpu.loss)).toBeLessThan(1e-4);
      for (const [k, g] of cpu.grads)
        expect(maxDiff(gpu.grads.get(k) as Float32Array, g) / maxAbs(g), k).toBeLessThan(1e-4);
    },
  );

  it('a 16-bit tied model merges back to float32 and saves whole; saving it still 16-bit is refused', async () => {
    const dir = `${fixtures}peft-llama-tiny/base`;
    const h = await AutoModelForCausalLM.fromFiles(reader(dir), { dtype: 'f16' });
    const out = mkdtempSync(join(tmpdir(), 'tied-f16-'));
    try {
      // a table alone (the Linear weights back in float32) is refused too: the file would lack it
      dequantizeLinears(h);
      expect(h.getSubmodule('model.embed_tokens')).toBeInstanceOf(QuantizedEmbedding);
      await expect(savePretrained(h, out)).rejects.toThrow(
        /savePretrained: 'model\.embed_tokens' is quantized \(f16\); .*mergeAndUnload\(\{ dtype: 'f32' \}\) first/,
      );
      const probe = lr.tensor([[1, 5, 9, 200, 17, 3]], { dtype: 'int32' });
      const [plain] = await logitsAndLoss(h, probe);
      probe.dispose();
      const lora = applyLora(h, {
        r: 2,
        targetModules: ['q_proj', 'v_proj'],
        initLoraWeights: false,
        seed: 3,
      });
      const ids = lr.tensor([[1, 5, 9, 200, 17, 3]], { dtype: 'int32' });
      const [before] = await logitsAndLoss(h, ids);
      expect(maxDiff(before, plain)).toBeGreaterThan(1e-3 * maxAbs(plain)); // the adapter does change them
      const merged = lora.mergeAndUnload({ dtype: 'f32' });
      expect(
        merged
          .namedModules()
          .some(([, m]) => m instanceof QuantizedEmbedding || m instanceof QuantizedLinear),
      ).toBe(false);
      expect(merged.getParameter('model.embed_tokens.weight').shape).toEqual([512, 64]);
      await savePretrained(merged, out);
      const back = await AutoModelForCausalLM.fromFiles(reader(out));
      const [after] = await logitsAndLoss(back, ids);
      // the f16 table decoded exactly, ΔW added in float32: the unmerged 16-bit model's logits
      expect(maxDiff(after, before)).toBeLessThan(1e-5 * maxAbs(before));
      lr.dispose(ids);
      back.dispose();
      merged.dispose();
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
