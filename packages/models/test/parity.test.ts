import '@lowrank/autograd';
import { readFileSync } from 'node:fs';
import { noGrad } from '@lowrank/autograd';
import { loadAdapterFromBytes } from '@lowrank/lora';
import { parseSafetensors } from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { GPT2_CONV1D_WEIGHTS, gpt2FromSafetensors, gpt2KeysFromHF, loadGPT2Weights } from '../src/hf.js';

/**
 * Parity with Hugging Face transformers 5.17 + PEFT 0.21 on the fixture made by
 * test/fixtures/make_fixtures.py (a random tiny GPT-2 and a PEFT LoRA adapter on c_attn): logits,
 * loss and LoRA gradients within 1e-4 relative, on the CPU and on WebGPU.
 */
const dir = new URL('./fixtures/peft-gpt2-tiny/', import.meta.url).pathname;
const config = JSON.parse(readFileSync(`${dir}base/config.json`, 'utf8')) as Record<string, unknown>;
const baseBytes = new Uint8Array(readFileSync(`${dir}base/model.safetensors`));
const adapterConfig = readFileSync(`${dir}adapter/adapter_config.json`, 'utf8');
const adapterBytes = new Uint8Array(readFileSync(`${dir}adapter/adapter_model.safetensors`));
const ref = parseSafetensors(new Uint8Array(readFileSync(`${dir}reference.safetensors`))).tensors;

/** max |a − b| / max |b|: the relative error the 1e-4 bound is about. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}

const webgpuUnavailable = await lr
  .init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => lr.setDefaultDevice('cpu'));

function paritySuite(device: lr.Device): void {
  const ids = (): lr.Tensor =>
    lr.fromTypedArray(ref.input_ids.data, ref.input_ids.shape, { dtype: 'int32', device });

  it('reproduces base_logits', async () => {
    const model = gpt2FromSafetensors(config, baseBytes);
    await model.to(device);
    model.eval();
    const logits = noGrad(() => model.forward(ids()).logits);
    expect(logits.shape).toEqual([2, 16, 256]);
    expect(relErr(await logits.data(), ref.base_logits.data)).toBeLessThan(1e-4);
    logits.dispose();
    model.dispose();
  });

  it('with the PEFT adapter: lora_logits, loss, every LoRA gradient, merged_logits', async () => {
    const model = gpt2FromSafetensors(config, baseBytes);
    await model.to(device);
    const warnings: string[] = [];
    const lora = loadAdapterFromBytes(model, adapterConfig, adapterBytes, {
      onWarning: (w) => warnings.push(w),
    });
    expect(warnings.every((w) => /unknown key/.test(w))).toBe(true);
    // eval: unmerged LoRA logits
    model.eval();
    const logits = noGrad(() => model.forward(ids()).logits);
    expect(relErr(await logits.data(), ref.lora_logits.data)).toBeLessThan(1e-4);
    // train mode (dropout 0): loss with labels = input_ids and the gradients of A and B only
    model.train();
    const input = ids();
    const loss = model.forward(input, { labels: input }).loss!;
    expect(Math.abs(((await loss.item()) as number) - ref.loss.data[0]) / ref.loss.data[0]).toBeLessThan(
      1e-4,
    );
    loss.backward();
    const gradKeys = Object.keys(ref).filter((k) => k.endsWith('.grad'));
    expect(gradKeys).toHaveLength(4);
    const trainable = new Map(model.namedParameters().filter(([, p]) => p.requiresGrad));
    expect(trainable.size).toBe(gradKeys.length);
    for (const key of gradKeys) {
      // base_model.model.<module>.lora_A.weight.grad → <module>.lora_A.default.weight
      const name = key
        .replace(/^base_model\.model\./, '')
        .replace(/\.(lora_[AB])\.weight\.grad$/, '.$1.default.weight');
      const p = trainable.get(name);
      expect(p, name).toBeDefined();
      expect(p!.grad, name).not.toBeNull();
      expect(relErr(await p!.grad!.data(), ref[key].data), name).toBeLessThan(1e-4);
    }
    for (const [, p] of model.namedParameters()) if (!p.requiresGrad) expect(p.grad).toBeNull();
    model.zeroGrad();
    // merged: W ← W + s·B·A, LoRA removed
    const merged = lora.mergeAndUnload();
    merged.eval();
    expect(merged.namedParameters().some(([n]) => n.includes('lora_'))).toBe(false);
    const mergedLogits = noGrad(() => merged.forward(ids()).logits);
    const m = await mergedLogits.data();
    expect(relErr(m, ref.merged_logits.data)).toBeLessThan(1e-4);
    // merged vs unmerged (ours): the paper's "no additional inference latency" at equal outputs
    expect(relErr(m, await logits.data())).toBeLessThan(1e-5);
    lr.dispose(logits, loss, mergedLogits);
    merged.dispose();
  });
}

describe('GPT-2 fixture parity on cpu', () => paritySuite('cpu'));
if (webgpuUnavailable) {
  describe('GPT-2 fixture parity on webgpu', () => {
    it.skip(`skipped: WebGPU unavailable (${webgpuUnavailable})`, () => {});
  });
} else {
  describe('GPT-2 fixture parity on webgpu', () => paritySuite('webgpu'));
}

describe('loading HF checkpoints by name', () => {
  it('asserts every name and shape, listing all problems', () => {
    const tensors = parseSafetensors(baseBytes).tensors;
    expect(Object.keys(tensors)).not.toContain('lm_head.weight');
    // a GPT2Model file (no transformer. prefix) with an old mask buffer and a tied head loads too
    const bare: Record<string, (typeof tensors)[string]> = {};
    for (const [k, v] of Object.entries(tensors)) bare[k.replace(/^transformer\./, '')] = v;
    bare['h.0.attn.bias'] = tensors['transformer.h.0.ln_1.weight'];
    bare['lm_head.weight'] = tensors['transformer.wte.weight'];
    expect([...gpt2KeysFromHF(bare).keys()].sort()).toEqual(Object.keys(tensors).sort());
    const model = gpt2FromSafetensors(config, baseBytes);
    expect(() => loadGPT2Weights(model, bare)).not.toThrow();
    // Conv1D weights are [in, out] in the file and in the model
    for (const suffix of GPT2_CONV1D_WEIGHTS) {
      expect(tensors[`transformer.h.0.${suffix}`].shape).toEqual(
        model.getParameter(`transformer.h.0.${suffix}`).shape,
      );
    }
    const broken: Record<string, (typeof tensors)[string]> = { ...tensors };
    delete broken['transformer.ln_f.bias'];
    broken['transformer.h.0.mlp.c_fc.weight'] = tensors['transformer.h.0.mlp.c_proj.weight'];
    broken['transformer.extra.weight'] = tensors['transformer.ln_f.weight'];
    expect(() => loadGPT2Weights(model, broken)).toThrow(
      /c_fc\.weight: checkpoint \[128,32\], model \[32,128\][\s\S]*missing keys: transformer\.ln_f\.bias[\s\S]*unexpected keys: transformer\.extra\.weight/,
    );
    const small = { ...config, n_embd: 16 };
    expect(() => gpt2FromSafetensors(small, baseBytes)).toThrow(/does not match the config/);
    model.dispose();
  });
});
