import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { generate } from '@lowrank/models';
import { AutoModelForCausalLM } from '@lowrank/models/node';
import { describe, expect, it } from 'vitest';

/**
 * `lowrank chat` as a user runs it: a spawned CLI on the peft-llama-tiny fixture, two lines on
 * stdin (the KV cache kept from the first turn to the second). Each turn's rendered prompt and token ids (`--show-prompt`) are checked against the
 * chat template rendered here with @huggingface/jinja and encoded with @huggingface/tokenizers
 * directly (not through lowrank's HFTokenizer), the first turn also against transformers' own
 * rendering (the fixture's tokenizer_cases.json), and the greedy replies against `generate` run
 * in this process on the same ids.
 */
const fixture = new URL('../../models/test/fixtures/peft-llama-tiny/', import.meta.url).pathname;
const base = `${fixture}base`;
const cliPath = new URL('../src/cli.ts', import.meta.url).pathname;
const root = new URL('../../../', import.meta.url).pathname;

// the models package's own copies of the two libraries (the CLI package does not depend on them)
const fromModels = createRequire(new URL('../../models/package.json', import.meta.url));
const load = async <T>(name: string): Promise<T> =>
  (await import(pathToFileURL(fromModels.resolve(name)).href)) as T;
const { Template } = await load<{
  Template: new (source: string) => { render(context: Record<string, unknown>): string };
}>('@huggingface/jinja');
const { Tokenizer } = await load<{
  Tokenizer: new (
    tokenizer: unknown,
    config: unknown,
  ) => {
    encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
    decode(
      ids: number[],
      options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean },
    ): string;
  };
}>('@huggingface/tokenizers');

function chat(input: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', cliPath, 'chat', '--device', 'cpu', ...args],
    { cwd: root, env: { ...process.env, LOWRANK_DEBUG: '' }, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  child.stdin.end(input);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c ?? 1, stdout, stderr }));
  });
}

interface Turn {
  prompt: string;
  ids: number[];
  reply: number[];
  stoppedBy: string;
  /** Prompt tokens taken from the KV cache kept across turns. */
  cached: number;
}

function turns(stderr: string): Turn[] {
  const out: Turn[] = [];
  for (const line of stderr.split('\n')) {
    if (line.startsWith('prompt '))
      out.push({ prompt: JSON.parse(line.slice(7)), ids: [], reply: [], stoppedBy: '', cached: -1 });
    else if (line.startsWith('cached ')) out[out.length - 1].cached = Number(line.slice(7));
    else if (line.startsWith('ids ')) out[out.length - 1].ids = JSON.parse(line.slice(4));
    else if (line.startsWith('reply ')) {
      const [ids, why] = line.slice(6).split(' ');
      Object.assign(out[out.length - 1], { reply: JSON.parse(ids), stoppedBy: why });
    }
  }
  return out;
}

describe('lowrank chat', () => {
  it('two stdin lines: each turn renders the whole conversation through the chat template, encodes it, and generates greedily with the KV cache', async () => {
    const r = await chat(
      'Hi there\n\nHow are you?\n',
      '--model',
      base,
      '--system',
      'Be brief.',
      '--greedy',
      '--max-tokens',
      '6',
      '--show-prompt',
    );
    expect(r.code, r.stderr).toBe(0);
    const got = turns(r.stderr);
    expect(got.length).toBe(2); // the empty line is no turn
    expect(r.stderr).toMatch(/^base \{"float32":\d+\}$/m); // the default: float32

    const template = new Template(readFileSync(`${base}/chat_template.jinja`, 'utf8'));
    const tok = new Tokenizer(
      JSON.parse(readFileSync(`${base}/tokenizer.json`, 'utf8')),
      JSON.parse(readFileSync(`${base}/tokenizer_config.json`, 'utf8')),
    );
    const render = (messages: { role: string; content: string }[]) =>
      template.render({
        messages,
        add_generation_prompt: true,
        bos_token: '<|endoftext|>',
        eos_token: '<|endoftext|>',
      });
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi there' },
    ];
    // turn 1: exactly transformers' rendering of the same messages (the fixture's case)
    const cases = JSON.parse(readFileSync(`${fixture}tokenizer_cases.json`, 'utf8')) as {
      chat: { messages: unknown; rendered: string };
    };
    expect(cases.chat.messages).toEqual(messages);
    expect(got[0].prompt).toBe(cases.chat.rendered);
    expect(got[0].prompt).toBe(render(messages));
    expect(got[0].ids).toEqual(tok.encode(got[0].prompt, { add_special_tokens: false }).ids);
    // turn 2: the conversation so far, the first reply as the assistant's message
    const reply1 = tok.decode(got[0].reply, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: false,
    });
    messages.push({ role: 'assistant', content: reply1 }, { role: 'user', content: 'How are you?' });
    expect(got[1].prompt).toBe(render(messages));
    expect(got[1].prompt.startsWith(got[0].prompt + reply1)).toBe(true);
    expect(got[1].ids).toEqual(tok.encode(got[1].prompt, { add_special_tokens: false }).ids);

    // the KV cache kept across turns: turn 2 runs only what it adds to turn 1's prompt and
    // reply (the cache holds every generated token but the last, which was never fed)
    expect(got[0].cached).toBe(0);
    const held = [...got[0].ids, ...(got[0].stoppedBy === 'eos' ? got[0].reply : got[0].reply.slice(0, -1))];
    let shared = 0;
    while (shared < Math.min(held.length, got[1].ids.length - 1) && held[shared] === got[1].ids[shared])
      shared++;
    expect(shared).toBeGreaterThan(got[0].ids.length);
    expect(got[1].cached).toBe(shared);
    // the replies: greedy generation (KV cache) on those ids in this process, stopping at eos 0
    const model = await AutoModelForCausalLM.fromPretrained(base);
    for (const t of got) {
      const want = await generate(model, t.ids, { maxNewTokens: 6, greedy: true, eosTokenId: [0] }); // no cache kept
      expect(t.stoppedBy).toBe(want.stoppedBy);
      expect(t.reply).toEqual(want.stoppedBy === 'eos' ? want.tokens.slice(0, -1) : want.tokens);
      expect(t.reply.length).toBeGreaterThan(0);
    }
    model.dispose();
    // stdout: the two replies, one after the other, each ended by a newline
    expect(r.stdout.endsWith('\n')).toBe(true);
    expect(r.stdout.length).toBeGreaterThanOrEqual(2);
  });

  it('--dtype f16: the base in 16 bits, the reply the f16 model gives in this process', async () => {
    const r = await chat(
      'Hi there\n',
      '--model',
      base,
      '--dtype',
      'f16',
      '--greedy',
      '--max-tokens',
      '6',
      '--show-prompt',
    );
    expect(r.code, r.stderr).toBe(0);
    const [t] = turns(r.stderr);
    // every Linear weight and the tied table in f16 (q, k, v, o, gate, up, down in 2 layers and
    // 512 x 64: 106,496 values, 2 bytes each); the norms stay float32
    expect(r.stderr).toMatch(/^base \{"f16":212992,"float32":1280\}$/m);
    const model = await AutoModelForCausalLM.fromPretrained(base, { dtype: 'f16' });
    const want = await generate(model, t.ids, { maxNewTokens: 6, greedy: true, eosTokenId: [0] });
    expect(t.reply).toEqual(want.stoppedBy === 'eos' ? want.tokens.slice(0, -1) : want.tokens);
    model.dispose();
    const bad = await chat('Hi\n', '--model', base, '--dtype', 'f8');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /option '--dtype <dtype>' argument 'f8' is invalid\. Allowed choices are f32, f16, bf16/,
    );
  });

  it('a model without a chat template is refused with a clear error', async () => {
    const gpt2 = new URL('../../models/test/fixtures/peft-gpt2-tiny/base', import.meta.url).pathname;
    const r = await chat('Hi\n', '--model', gpt2, '--max-tokens', '2');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/lowrank: chat: the model has no chat template/);
  });
});
