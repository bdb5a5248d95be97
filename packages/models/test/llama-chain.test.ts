import '@lowrank/autograd';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noGrad } from '@lowrank/autograd';
import { applyLora, getLoraModel } from '@lowrank/lora';
import { loadAdapter, saveAdapter } from '@lowrank/lora/node';
import { parseSafetensors } from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { afterAll, describe, expect, it } from 'vitest';
import { generate } from '../src/generate.js';
import { LMTrainer } from '../src/index.js';
import { AutoModelForCausalLM, loadHFTokenizer } from '../src/node.js';

/**
 * Issue 17's chain on a Llama-family checkpoint directory, in Node: fromPretrained → applyLora →
 * train → save (PEFT files) → load onto a fresh base → merge → generate; and the other direction
 * of PEFT compatibility: an adapter lowrank wrote, loaded by PEFT itself
 * (fixtures/check_lowrank_adapter.py → peft_check.json).
 */
const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const base = join(fixtures, 'peft-llama-tiny', 'base');
// the shipped 5.8M Llama (f16, BPE tokenizer.json): a pre-trained checkpoint that learns visibly
const shipped = new URL('../../../examples/checkpoints/llama-shakespeare-brown', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'lowrank-chain-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
};

describe('a Llama checkpoint through the whole chain', () => {
  it('fromPretrained → applyLora → train → save → load → merge → generate', async () => {
    const model = await AutoModelForCausalLM.fromPretrained(shipped);
    const tok = loadHFTokenizer(shipped);
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(30);
    const tokens = Int32Array.from(tok.encode(text));
    const lora = applyLora(model, { r: 4, loraAlpha: 8, targetModules: 'all-linear', seed: 3 });
    const trainer = new LMTrainer(model, lora.trainableParameters(), {
      steps: 12,
      batchSize: 4,
      blockSize: 16,
      lr: 0.01,
      seed: 1,
    });
    const losses: number[] = [];
    for (let i = 0; i < 12; i++) losses.push(await trainer.trainStep(tokens));
    expect(losses[11]).toBeLessThan(losses[0] / 2); // a repeated sentence is learnt quickly

    const saved = await saveAdapter(lora, join(dir, 'adapter'));
    const config = JSON.parse(readFileSync(join(saved.dir, 'adapter_config.json'), 'utf8'));
    expect(config.base_model_name_or_path).toBe(shipped);
    expect([...config.target_modules].sort()).toEqual(
      ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'].sort(),
    );

    const prompt = tok.encode('The quick brown');
    const ids = lr.fromTypedArray(Int32Array.from(prompt), [1, prompt.length], { dtype: 'int32' });
    model.eval();
    const trained = await noGrad(() => model.forward(ids).logits).data();
    const want = await generate(model, prompt, { maxNewTokens: 10, greedy: true });

    const fresh = await AutoModelForCausalLM.fromPretrained(shipped);
    const loaded = await loadAdapter(fresh, saved.dir, { onWarning: (m) => expect.fail(m) });
    fresh.eval();
    expect(maxAbs(await noGrad(() => fresh.forward(ids).logits).data(), trained)).toBe(0);
    const merged = loaded.mergeAndUnload();
    expect(getLoraModel(merged)).toBeNull();
    expect(maxAbs(await noGrad(() => merged.forward(ids).logits).data(), trained)).toBeLessThan(1e-4); // float rounding of W + BA
    const got = await generate(merged, prompt, { maxNewTokens: 10, greedy: true });
    expect(got.tokens).toEqual(want.tokens);
    // the fine-tuned continuation is the training text, which the base does not produce
    expect(tok.decode(got.tokens)).toMatch(/^ fox jumps over/);
    const plain = await AutoModelForCausalLM.fromPretrained(shipped);
    plain.eval();
    expect((await generate(plain, prompt, { maxNewTokens: 10, greedy: true })).tokens).not.toEqual(
      got.tokens,
    );
  }, 120_000);

  it('an adapter lowrank wrote loads in PEFT with the same logits (peft_check.json)', async () => {
    const d = join(fixtures, 'lowrank-adapter-llama');
    const check = JSON.parse(readFileSync(join(d, 'peft_check.json'), 'utf8'));
    const sha = (f: string) =>
      createHash('sha256')
        .update(readFileSync(join(d, f)))
        .digest('hex');
    // PEFT checked exactly these files
    for (const f of ['adapter_model.safetensors', 'adapter_config.json', 'lowrank_logits.safetensors'])
      expect(check[`${f}_sha256`], f).toBe(sha(f));
    expect(check.max_abs_diff_logits).toBeLessThan(1e-4);
    expect(check.max_abs_diff_merged_logits).toBeLessThan(1e-4);
    // and they are what lowrank computes today: its logits with the adapter, which differ from the base's
    const ref = parseSafetensors(new Uint8Array(readFileSync(join(d, 'lowrank_logits.safetensors')))).tensors;
    const model = await AutoModelForCausalLM.fromPretrained(base);
    model.eval();
    const ids = lr.fromTypedArray(ref.input_ids.data, ref.input_ids.shape, { dtype: 'int32' });
    const before = await noGrad(() => model.forward(ids).logits).data();
    await loadAdapter(model, d, { onWarning: () => {} });
    const after = await noGrad(() => model.forward(ids).logits).data();
    expect(maxAbs(after, ref.logits.data)).toBeLessThan(1e-5);
    expect(maxAbs(before, ref.logits.data)).toBeGreaterThan(1e-3);
    expect(existsSync(join(fixtures, 'check_lowrank_adapter.py'))).toBe(true);
  });
});
