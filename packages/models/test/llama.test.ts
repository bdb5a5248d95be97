import '@lowrank/autograd';
import { readFileSync } from 'node:fs';
import { noGrad } from '@lowrank/autograd';
import { adapterParameters, loadAdapterFromBytes } from '@lowrank/lora';
import { parseSafetensors, type SafetensorsTensor } from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { generate, generateNoCache } from '../src/generate.js';
import { LlamaForCausalLM } from '../src/llama.js';
import { AutoModelForCausalLM } from '../src/node.js';

/**
 * Parity with transformers 5.17 + PEFT 0.21 on fixtures made by test/fixtures/make_llama_fixtures.py:
 * - peft-llama-tiny: GQA, f32, tied, LoRA on q/v (on the CPU and on WebGPU);
 * - llama3-bf16-sharded: bf16 shards, llama3 RoPE, untied, MQA, attention/MLP biases, rsLoRA all-linear;
 * - qwen2-f16-dynamic: f16, q/k/v biases, dynamic NTK RoPE past the context, LoRA on all 7 projections;
 * - mistral-window-linear: sliding window 4 < T, linear RoPE, untied.
 * Base, LoRA and merged logits, the loss and every adapter gradient within 1e-4, and 12 greedy
 * tokens with the KV cache.
 */
const TOL = 1e-4;

interface Fixture {
  name: string;
  dir: string;
  ref: Record<string, SafetensorsTensor>;
}

function fixture(name: string): Fixture {
  const dir = new URL(`./fixtures/${name}/`, import.meta.url).pathname;
  const ref = parseSafetensors(new Uint8Array(readFileSync(`${dir}reference.safetensors`))).tensors;
  return { name, dir, ref };
}

/** max |a − b|. */
function maxAbs(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let d = 0;
  for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got[i] - want[i]));
  return d;
}

/** max |a − b| / max |b|. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  return maxAbs(got, want) / scale;
}

const webgpuUnavailable = await lr
  .init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => lr.setDefaultDevice('cpu'));

async function load(f: Fixture, device: lr.Device): Promise<LlamaForCausalLM> {
  const model = await AutoModelForCausalLM.fromPretrained(`${f.dir}base`, { device });
  expect(model).toBeInstanceOf(LlamaForCausalLM);
  return model as LlamaForCausalLM;
}

function paritySuite(f: Fixture, device: lr.Device): void {
  const { ref } = f;
  const ids = (): lr.Tensor =>
    lr.fromTypedArray(ref.input_ids.data, ref.input_ids.shape, { dtype: 'int32', device });

  it('base logits and 12 greedy tokens with the KV cache', async () => {
    const model = await load(f, device);
    model.eval();
    const logits = noGrad(() => model.forward(ids()).logits);
    expect(logits.shape).toEqual(ref.base_logits.shape);
    expect(maxAbs(await logits.data(), ref.base_logits.data)).toBeLessThan(TOL);
    logits.dispose();
    const [, T] = ref.input_ids.shape;
    const prompt = Array.from(ref.input_ids.data.slice(0, T));
    const want = Array.from(ref.base_greedy_ids.data.slice(T));
    const cached = await generate(model, prompt, { maxNewTokens: 12, greedy: true });
    expect(cached.tokens).toEqual(want);
    if (device === 'cpu') {
      const uncached = await generateNoCache(model, prompt, { maxNewTokens: 12, greedy: true });
      expect(uncached.tokens).toEqual(want);
    }
    model.dispose();
  });

  it('with the PEFT adapter: LoRA logits, loss, every adapter gradient, merged logits', async () => {
    const model = await load(f, device);
    const config = readFileSync(`${f.dir}adapter/adapter_config.json`, 'utf8');
    const bytes = new Uint8Array(readFileSync(`${f.dir}adapter/adapter_model.safetensors`));
    const lora = loadAdapterFromBytes(model, config, bytes, { onWarning: () => {} });
    model.eval();
    const logits = noGrad(() => model.forward(ids()).logits);
    const lo = await logits.data();
    expect(maxAbs(lo, ref.lora_logits.data)).toBeLessThan(TOL);
    model.train();
    const input = ids();
    const loss = model.forward(input, { labels: input }).loss!;
    expect(Math.abs(((await loss.item()) as number) - ref.loss.data[0])).toBeLessThan(TOL);
    loss.backward();
    const gradKeys = Object.keys(ref).filter((k) => k.endsWith('.grad'));
    const params = adapterParameters(lora);
    expect([...params.keys()].map((k) => `${k}.grad`).sort()).toEqual(gradKeys.sort());
    for (const [key, p] of params) {
      expect(p.grad, key).not.toBeNull();
      expect(relErr(await p.grad!.data(), ref[`${key}.grad`].data), key).toBeLessThan(TOL);
    }
    for (const [, p] of model.namedParameters()) if (!p.requiresGrad) expect(p.grad).toBeNull();
    model.zeroGrad();
    const merged = lora.mergeAndUnload();
    merged.eval();
    expect(merged.namedParameters().some(([n]) => n.includes('lora_'))).toBe(false);
    const mergedLogits = noGrad(() => merged.forward(ids()).logits);
    expect(maxAbs(await mergedLogits.data(), ref.merged_logits.data)).toBeLessThan(TOL);
    lr.dispose(logits, loss, mergedLogits, input);
    merged.dispose();
  });
}

const tiny = fixture('peft-llama-tiny');
describe('peft-llama-tiny parity on cpu', () => paritySuite(tiny, 'cpu'));
if (webgpuUnavailable) {
  describe('peft-llama-tiny parity on webgpu', () => {
    it.skip(`skipped: WebGPU unavailable (${webgpuUnavailable})`, () => {});
  });
} else {
  describe('peft-llama-tiny parity on webgpu', () => paritySuite(tiny, 'webgpu'));
}
for (const name of ['llama3-bf16-sharded', 'qwen2-f16-dynamic', 'mistral-window-linear']) {
  describe(`${name} parity on cpu`, () => paritySuite(fixture(name), 'cpu'));
}
