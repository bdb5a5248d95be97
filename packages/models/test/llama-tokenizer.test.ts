import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HFTokenizer, isHFTokenizerJson } from '../src/hf-tokenizer.js';
import { loadHFTokenizer, loadTokenizer } from '../src/node.js';

/**
 * HF tokenizer.json through @huggingface/tokenizers against what the Python `tokenizers` 0.23
 * library produced for the fixtures (tokenizer_cases.json): ids without special tokens, their
 * decoding, and the chat template rendered by transformers' apply_chat_template.
 */
interface Cases {
  cases: { text: string; ids: number[]; decoded: string }[];
  chat: {
    messages: { role: string; content: string }[];
    add_generation_prompt: boolean;
    rendered: string;
  } | null;
}
const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const casesOf = (name: string): Cases =>
  JSON.parse(readFileSync(`${fixtures}${name}/tokenizer_cases.json`, 'utf8')) as Cases;

// byte-level BPE (peft-llama-tiny, llama3, mistral) and Metaspace + byte fallback (qwen2-f16-dynamic)
for (const name of ['peft-llama-tiny', 'llama3-bf16-sharded', 'qwen2-f16-dynamic', 'mistral-window-linear']) {
  describe(`${name} tokenizer`, () => {
    const tok = loadHFTokenizer(`${fixtures}${name}/base`);
    const { cases } = casesOf(name);
    it.each(cases.map((c) => [JSON.stringify(c.text), c] as const))(
      'encodes and decodes %s exactly',
      (_, c) => {
        expect(tok.encode(c.text)).toEqual(c.ids);
        expect(tok.decode(c.ids)).toBe(c.decoded);
      },
    );
  });
}

describe('peft-llama-tiny special tokens and chat template', () => {
  const dir = `${fixtures}peft-llama-tiny/base`;
  const tok = loadHFTokenizer(dir);
  const { chat } = casesOf('peft-llama-tiny');

  it('reads the special tokens of tokenizer_config.json', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.eosTokenId).toBe(0);
    expect(tok.bosTokenId).toBe(0);
    expect(tok.specialTokens).toEqual({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' });
    expect(tok.tokenToId('<|im_start|>')).toBe(1);
    expect(tok.decode([0, 67], { skipSpecialTokens: true })).toBe('a');
  });

  it('renders chat_template.jinja as transformers does', () => {
    expect(chat).not.toBeNull();
    expect(tok.applyChatTemplate(chat!.messages, { addGenerationPrompt: chat!.add_generation_prompt })).toBe(
      chat!.rendered,
    );
    expect(tok.applyChatTemplate(chat!.messages)).toBe(
      chat!.rendered.replace(/<\|im_start\|>assistant\n$/, ''),
    );
  });

  it("takes the template from tokenizer_config.json's chat_template when there is no .jinja file", () => {
    const files = {
      tokenizer: JSON.parse(readFileSync(`${dir}/tokenizer.json`, 'utf8')) as Record<string, unknown>,
      config: {
        eos_token: { content: '<|im_end|>' },
        chat_template: [{ name: 'default', template: '{{ eos_token }}' }],
      },
    };
    const t = new HFTokenizer(files);
    expect(t.eosTokenId).toBe(2);
    expect(t.applyChatTemplate([])).toBe('<|im_end|>');
    expect(() => new HFTokenizer({ tokenizer: files.tokenizer }).applyChatTemplate([])).toThrow(
      /no chat template/,
    );
  });

  it('loadTokenizer tells an HF tokenizer.json from a lowrank spec (the GPT-2 folder crash)', () => {
    expect(isHFTokenizerJson(JSON.parse(readFileSync(`${dir}/tokenizer.json`, 'utf8')))).toBe(true);
    const t = loadTokenizer(dir, 512);
    expect(t).toBeInstanceOf(HFTokenizer);
    expect(t.encode('Hello world')).toEqual([42, 411, 81, 266, 273, 315]);
    expect(() => t.decode([512])).toThrow(/outside \[0, 512\)/);
  });
});
