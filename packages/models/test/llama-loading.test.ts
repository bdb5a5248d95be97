import '@lowrank/autograd';
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyLora, loadAdapterFromBytes, serializeAdapter } from '@lowrank/lora';
import { parseSafetensors, serializeSafetensors } from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM as PureAuto } from '../src/auto.js';
import { GPT2LMHeadModel } from '../src/gpt2.js';
import { causalWindowMask, LlamaForCausalLM } from '../src/llama.js';
import { llamaConfig } from '../src/llama-config.js';
import { AutoModelForCausalLM, savePretrained } from '../src/node.js';
import { inverseFrequencies } from '../src/rope.js';
import { logitsOf } from './model-values.js';

const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'lowrank-llama-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const readConfig = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(`${fixtures}${name}/base/config.json`, 'utf8')) as Record<string, unknown>;

function copyFixture(name: string): string {
  const dir = join(tmp, `${name}-${Math.random().toString(36).slice(2)}`);
  cpSync(`${fixtures}${name}/base`, dir, { recursive: true });
  return dir;
}

describe('RoPE frequencies against transformers 5.17 (inv_freq printed by PyTorch for the fixtures)', () => {
  it('llama3: θ 500000, factor 8, low 1, high 4, original context 16, head_dim 16', () => {
    const rope = llamaConfig(readConfig('llama3-bf16-sharded')).rope;
    const inv = inverseFrequencies(16, rope, 13);
    const torch = [0.5760563611984253, 0.024240344762802124, 0.004700753837823868, 0.0009115831344388425];
    for (let i = 0; i < 4; i++) expect(Math.abs(inv[i] - torch[i]) / torch[i]).toBeLessThan(1e-6);
  });

  it('dynamic: factor 2 past a context of 8, at 16 tokens (and unchanged within the context)', () => {
    const rope = llamaConfig(readConfig('qwen2-f16-dynamic')).rope;
    const torch = [1.0, 0.2702961266040802, 0.07305999845266342, 0.019747832790017128];
    const inv = inverseFrequencies(16, rope, 16);
    for (let i = 0; i < 4; i++) expect(Math.abs(inv[i] - torch[i]) / torch[i]).toBeLessThan(1e-6);
    expect(inverseFrequencies(16, rope, 8)[1]).toBeCloseTo(10000 ** -(2 / 16), 6);
  });

  it('linear divides every frequency by the factor', () => {
    const rope = llamaConfig(readConfig('mistral-window-linear')).rope;
    expect(rope).toMatchObject({ ropeType: 'linear', factor: 2, theta: 10000 });
    expect(inverseFrequencies(16, rope, 1)[1]).toBeCloseTo(10000 ** -(2 / 16) / 2, 6);
  });
});

describe('config.json spellings', () => {
  it("reads transformers 5's rope_parameters and the older rope_theta + rope_scaling alike", async () => {
    const v5 = readConfig('llama3-bf16-sharded');
    const { rope_parameters: p, ...rest } = v5 as { rope_parameters: Record<string, unknown> };
    const { rope_theta, ...scaling } = p;
    const old = { ...rest, rope_theta, rope_scaling: scaling };
    const older = { ...rest, rope_theta, rope_scaling: { ...scaling, rope_type: undefined, type: 'llama3' } };
    expect(llamaConfig(old).rope).toEqual(llamaConfig(v5).rope);
    expect(llamaConfig(older).rope).toEqual(llamaConfig(v5).rope);
    expect(llamaConfig({ ...rest, rope_scaling: null }).rope).toMatchObject({
      ropeType: 'default',
      theta: 10000,
    });
    // the model built from the old spelling gives the same logits
    const dir = copyFixture('llama3-bf16-sharded');
    writeFileSync(join(dir, 'config.json'), JSON.stringify(old));
    const ref = parseSafetensors(
      new Uint8Array(readFileSync(`${fixtures}llama3-bf16-sharded/reference.safetensors`)),
    ).tensors;
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const ids = lr.fromTypedArray(ref.input_ids.data, ref.input_ids.shape, { dtype: 'int32' });
    const got = await logitsOf(model, ids);
    let err = 0;
    for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - ref.base_logits.data[i]));
    expect(err).toBeLessThan(1e-4);
    model.dispose();
  });

  it('derives biases, windows and heads per model_type', () => {
    const qwen = llamaConfig(readConfig('qwen2-f16-dynamic'));
    expect(qwen).toMatchObject({
      qkv_bias: true,
      o_bias: false,
      sliding_window: null,
      tie_word_embeddings: true,
    });
    const llama = llamaConfig(readConfig('llama3-bf16-sharded'));
    expect(llama).toMatchObject({ qkv_bias: true, o_bias: true, mlp_bias: true, num_key_value_heads: 1 });
    const mistral = llamaConfig(readConfig('mistral-window-linear'));
    expect(mistral.layer_types).toEqual(['sliding_attention', 'sliding_attention']);
    expect(() => llamaConfig({ ...readConfig('peft-llama-tiny'), num_key_value_heads: 3 })).toThrow(
      /multiple of num_key_value_heads/,
    );
    expect(() =>
      llamaConfig({ ...readConfig('peft-llama-tiny'), rope_parameters: { rope_type: 'yarn' } }),
    ).toThrow(/RoPE type 'yarn' is not supported \(supported: default, linear, dynamic, llama3\)/);
  });

  it('builds the causal mask with a sliding window as HF does', async () => {
    const m = causalWindowMask(3, 2, 2, 'cpu'); // queries at 2, 3, 4 over keys 0…4, window 2
    expect(await m.toArray()).toEqual([
      [false, true, true, false, false],
      [false, false, true, true, false],
      [false, false, false, true, true],
    ]);
  });
});

describe('AutoModelForCausalLM and the weight files', () => {
  it('picks the class by model_type (gpt2 included), and lists the supported types otherwise', async () => {
    const gpt2 = await AutoModelForCausalLM.fromPretrained(`${fixtures}peft-gpt2-tiny/base`);
    expect(gpt2).toBeInstanceOf(GPT2LMHeadModel);
    gpt2.dispose();
    const qwen = PureAuto.fromConfig(readConfig('qwen2-f16-dynamic'));
    expect(qwen).toBeInstanceOf(LlamaForCausalLM);
    expect(qwen.getParameter('model.layers.0.self_attn.q_proj.bias').shape).toEqual([64]);
    expect(qwen.namedParameters().some(([n]) => n.includes('o_proj.bias'))).toBe(false);
    qwen.dispose();
    expect(() => PureAuto.fromConfig({ model_type: 'falcon' })).toThrow(
      /model_type "falcon" is not supported \(supported: gpt2, llama, qwen2, mistral\)/,
    );
    await expect(AutoModelForCausalLM.fromPretrained(join(tmp, 'nope'))).rejects.toThrow(
      /model directory not found/,
    );
  });

  it('reads F16 and BF16 files (widened to float32) and BF16 shards through the index', () => {
    const f16 = parseSafetensors(
      new Uint8Array(readFileSync(`${fixtures}qwen2-f16-dynamic/base/model.safetensors`)),
    );
    expect(new Set(Object.values(f16.tensors).map((t) => t.sourceDtype))).toEqual(new Set(['F16']));
    const shard = `${fixtures}llama3-bf16-sharded/base/model-00001-of-00004.safetensors`;
    const bf16 = parseSafetensors(new Uint8Array(readFileSync(shard)));
    expect(new Set(Object.values(bf16.tensors).map((t) => t.sourceDtype))).toEqual(new Set(['BF16']));
  });

  it('fails clearly on a missing shard, a shard that disagrees with the index, and missing or mis-shaped tensors', async () => {
    const dir = copyFixture('llama3-bf16-sharded');
    unlinkSync(join(dir, 'model-00002-of-00004.safetensors'));
    await expect(AutoModelForCausalLM.fromPretrained(dir)).rejects.toThrow(
      /weight shard not found: model-00002-of-00004\.safetensors/,
    );
    const dir2 = copyFixture('llama3-bf16-sharded');
    const index = JSON.parse(readFileSync(join(dir2, 'model.safetensors.index.json'), 'utf8'));
    index.weight_map['model.norm.weight'] = 'model-00001-of-00004.safetensors';
    index.weight_map['model.extra.weight'] = 'model-00001-of-00004.safetensors';
    writeFileSync(join(dir2, 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(AutoModelForCausalLM.fromPretrained(dir2)).rejects.toThrow(
      /does not match its index:[\s\S]*holds 'model\.norm\.weight', which the index puts in model-00001[\s\S]*'model\.extra\.weight' is not in model-00001/,
    );
    const dir3 = copyFixture('peft-llama-tiny');
    const tensors = {
      ...parseSafetensors(new Uint8Array(readFileSync(join(dir3, 'model.safetensors')))).tensors,
    };
    delete tensors['model.norm.weight'];
    tensors['model.layers.0.mlp.up_proj.weight'] = tensors['model.layers.0.mlp.down_proj.weight'];
    writeFileSync(join(dir3, 'model.safetensors'), serializeSafetensors(tensors));
    await expect(AutoModelForCausalLM.fromPretrained(dir3)).rejects.toThrow(
      /llama checkpoint does not match the config:[\s\S]*up_proj\.weight: checkpoint \[64,128\], model \[128,64\][\s\S]*missing keys: model\.norm\.weight/,
    );
    unlinkSync(join(dir3, 'model.safetensors'));
    await expect(AutoModelForCausalLM.fromPretrained(dir3)).rejects.toThrow(
      /model weights \(model\.safetensors or its index\) not found/,
    );
  });

  it('savePretrained writes a directory that loads back with the same logits (tokenizer copied)', async () => {
    const model = await AutoModelForCausalLM.fromPretrained(`${fixtures}mistral-window-linear/base`);
    expect(model).toBeInstanceOf(LlamaForCausalLM);
    const out = join(tmp, 'saved');
    await savePretrained(model as LlamaForCausalLM, out, {
      tokenizerFrom: `${fixtures}mistral-window-linear/base`,
    });
    const back = await AutoModelForCausalLM.fromPretrained(out);
    const ids = lr.tensor([[1, 2, 3, 4, 5, 6]], { dtype: 'int32' });
    expect(await logitsOf(back, ids)).toEqual(await logitsOf(model, ids));
    expect(readFileSync(join(out, 'tokenizer.json'), 'utf8')).toBe(
      readFileSync(`${fixtures}mistral-window-linear/base/tokenizer.json`, 'utf8'),
    );
    lr.dispose(ids);
    model.dispose();
    back.dispose();
  });
});

describe('LoRA targets on Llama-family models', () => {
  it("'all-linear' adapts the 7 projections of every layer and leaves the untied lm_head out; a saved adapter loads back", async () => {
    const model = PureAuto.fromConfig(readConfig('llama3-bf16-sharded'));
    const lora = applyLora(model, { r: 2, targetModules: 'all-linear', initLoraWeights: false, seed: 3 });
    const names = [...lora.layers.keys()];
    expect(names).toHaveLength(14);
    expect(new Set(names.map((n) => n.split('.').pop()))).toEqual(
      new Set(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']),
    );
    expect(names.some((n) => n.includes('lm_head'))).toBe(false);
    const ids = lr.tensor([[5, 6, 7, 8]], { dtype: 'int32' });
    const before = await logitsOf(model as LlamaForCausalLM, ids);
    const { configJson, safetensors } = await serializeAdapter(lora);
    const fresh = PureAuto.fromConfig(readConfig('llama3-bf16-sharded'));
    loadAdapterFromBytes(fresh, configJson, safetensors, { onWarning: () => {} });
    expect(await logitsOf(fresh as LlamaForCausalLM, ids)).toEqual(before);
    lr.dispose(ids);
    model.dispose();
    fresh.dispose();
  });
});
