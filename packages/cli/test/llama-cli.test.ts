import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GPT2LMHeadModel } from '@lowrank/models';
import { savePretrained } from '@lowrank/models/node';
import { afterAll, describe, expect, it } from 'vitest';
import { lowrank } from './run-cli.js';

/** The CLI on Llama-family directories and on a GPT-2 folder with an HF tokenizer.json. */
const llama = new URL('../../models/test/fixtures/peft-llama-tiny/base', import.meta.url).pathname;

const dir = mkdtempSync(join(tmpdir(), 'lowrank-llama-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const text = join(dir, 'text.txt');
writeFileSync(
  text,
  readFileSync(new URL('../../../data/tinyshakespeare/input.txt', import.meta.url), 'utf8').slice(0, 4000),
);

describe('lowrank CLI with Llama-family models', () => {
  it('train --model <llama dir> --lora → generate (plain and --chat) → merge → inspect', async () => {
    const run = join(dir, 'lora');
    const t = await lowrank(
      'train',
      '--model',
      llama,
      '--data',
      text,
      '--lora',
      '--r',
      '2',
      '--steps',
      '2',
      '--block-size',
      '16',
      '--batch-size',
      '2',
      '--out',
      run,
    );
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/LoRA training on (cpu|webgpu): trainable params: 896 /); // r = 2: q_proj 2·(64+64), v_proj 2·(64+32), 2 layers
    const adapter = JSON.parse(readFileSync(join(run, 'adapter_config.json'), 'utf8')) as {
      target_modules: string[];
    };
    expect(adapter.target_modules.sort()).toEqual(['q_proj', 'v_proj']);
    const g = await lowrank(
      'generate',
      '--model',
      llama,
      '--adapter',
      run,
      '--prompt',
      'First Citizen:',
      '--max-tokens',
      '4',
      '--greedy',
    );
    expect(g.code, g.stderr).toBe(0);
    expect(g.stdout).toMatch(/^First Citizen:[\s\S]*\[4 tokens, stopped by maxNewTokens\]/);
    const c = await lowrank(
      'generate',
      '--model',
      llama,
      '--chat',
      '--prompt',
      'Hi there',
      '--max-tokens',
      '2',
      '--greedy',
    );
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/^<\|im_start\|>user\nHi there<\|im_end\|>\n<\|im_start\|>assistant\n/);
    const merged = join(dir, 'merged');
    const m = await lowrank('merge', '--model', llama, '--adapter', run, '--out', merged);
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toMatch(/max \|merged − unmerged\| logit \d\.\d\de-([6-9]|1\d)$/m);
    for (const f of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'chat_template.jinja',
    ])
      expect(existsSync(join(merged, f)), f).toBe(true);
    const i = await lowrank('inspect', merged);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(
      /model: llama vocab 512, positions 2048, width 64, 2 layers, 4 heads \(2 key\/value\)/,
    );
  }, 120_000);

  it('a GPT-2 folder with an HF tokenizer.json generates instead of crashing on undefined.encode', async () => {
    const gpt = join(dir, 'gpt2-hf');
    const model = new GPT2LMHeadModel({
      vocab_size: 512,
      n_positions: 32,
      n_embd: 16,
      n_layer: 1,
      n_head: 2,
    });
    await savePretrained(model, gpt);
    copyFileSync(join(llama, 'tokenizer.json'), join(gpt, 'tokenizer.json'));
    model.dispose();
    const g = await lowrank(
      'generate',
      '--model',
      gpt,
      '--prompt',
      'Hello world',
      '--max-tokens',
      '3',
      '--seed',
      '1',
    );
    expect(g.code, g.stderr).toBe(0);
    expect(g.stderr).not.toMatch(/reading 'encode'/);
    expect(g.stdout).toMatch(/^Hello world[\s\S]*\[3 tokens, stopped by maxNewTokens\]/);
  }, 60_000);

  it('an unknown model_type fails in one line listing the supported ones', async () => {
    const bad = join(dir, 'bad');
    await savePretrained(
      new GPT2LMHeadModel({ vocab_size: 16, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2 }),
      bad,
    );
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ model_type: 'falcon' }));
    const g = await lowrank('generate', '--model', bad, '--prompt', 'x');
    expect(g.code).toBe(1);
    expect(g.stderr.trim()).toBe(
      'lowrank: AutoModelForCausalLM: model_type "falcon" is not supported (supported: gpt2, llama, qwen2, mistral)',
    );
  }, 60_000);
});
