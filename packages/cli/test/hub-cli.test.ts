import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeHub, filesOf } from '../../models/test/hub-server.js';
import { lowrank } from './run-cli.js';

/** `lowrank train --model org/name`: the Hub id goes through the same loader (a Hub-shaped server on 127.0.0.1). */
const llama = new URL('../../models/test/fixtures/peft-llama-tiny/base', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'lowrank-hub-cli-'));
const hub = new FakeHub();
hub.add('org/tiny', filesOf(llama));
const saved = { endpoint: process.env.HF_ENDPOINT, cache: process.env.HF_HUB_CACHE };
beforeAll(async () => {
  process.env.HF_ENDPOINT = await hub.start(); // the CLI's child processes inherit both
  process.env.HF_HUB_CACHE = join(dir, 'hf-cache');
});
afterAll(async () => {
  await hub.stop();
  for (const [k, v] of [
    ['HF_ENDPOINT', saved.endpoint],
    ['HF_HUB_CACHE', saved.cache],
  ] as const)
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  rmSync(dir, { recursive: true, force: true });
});

describe('lowrank CLI with a Hub id', () => {
  it('train --model org/tiny --lora downloads into HF_HUB_CACHE, records the id; generate then needs no network', async () => {
    const text = join(dir, 'text.txt');
    writeFileSync(text, 'First Citizen:\nBefore we proceed any further, hear me speak.\n'.repeat(20));
    const run = join(dir, 'lora');
    const t = await lowrank(
      'train',
      '--model',
      'org/tiny',
      '--data',
      text,
      '--lora',
      '--r',
      '2',
      '--steps',
      '1',
      '--block-size',
      '16',
      '--batch-size',
      '2',
      '--out',
      run,
    );
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/downloaded org\/tiny: model\.safetensors \(429336 bytes\)/);
    const adapter = JSON.parse(readFileSync(join(run, 'adapter_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(adapter.base_model_name_or_path).toBe('org/tiny');
    expect((adapter.target_modules as string[]).sort()).toEqual(['q_proj', 'v_proj']);
    const commit = hub.repos.get('org/tiny')!.commit;
    expect(readFileSync(join(dir, 'hf-cache', 'models--org--tiny', 'refs', 'main'), 'utf8')).toBe(commit);
    await hub.stop(); // from here on, only the cache
    const g = await lowrank(
      'generate',
      '--model',
      'org/tiny',
      '--adapter',
      run,
      '--prompt',
      'First',
      '--max-tokens',
      '2',
      '--greedy',
    );
    expect(g.code, g.stderr).toBe(0);
    expect(g.stdout).toMatch(/^First[\s\S]*\[2 tokens, stopped by maxNewTokens\]/);
    const merged = join(dir, 'merged');
    const m = await lowrank('merge', '--model', 'org/tiny', '--adapter', run, '--out', merged);
    expect(m.code, m.stderr).toBe(0);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja'])
      expect(readFileSync(join(merged, f)), f).toEqual(readFileSync(join(llama, f)));
    const w = await lowrank(
      'generate',
      '--model',
      llama,
      '--adapter',
      run,
      '--prompt',
      'First',
      '--max-tokens',
      '1',
    );
    expect(w.code, w.stderr).toBe(0);
    expect(w.stderr).toContain(
      `warning: loadAdapter: the adapter was trained on 'org/tiny' (base_model_name_or_path) but the model was loaded from '${llama}'`,
    );
  }, 180_000);
});
