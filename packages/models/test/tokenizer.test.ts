import { Generator } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { ByteTokenizer, CharTokenizer, GPT2Tokenizer, tokenizerFromSpec } from '../src/tokenizer.js';

describe('GPT2Tokenizer (r50k_base through js-tiktoken, bundled ranks)', () => {
  // offline: building and using the tokenizer must not touch the network
  const realFetch = globalThis.fetch;
  globalThis.fetch = () => Promise.reject(new Error('network access during tokenization'));
  const tok = new GPT2Tokenizer();
  const offline = tok.encode('offline check');
  globalThis.fetch = realFetch;
  it('works offline (ranks ship inside the npm package)', () => {
    expect(tok.decode(offline)).toBe('offline check');
  });
  it('matches known GPT-2 ids', () => {
    // ids from Hugging Face's GPT2TokenizerFast('gpt2')
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode(' the')).toEqual([262]);
    expect(tok.encode('<|endoftext|>')).toEqual([50256]);
    expect(tok.encode('<|endoftext|>', { allowSpecial: false }).length).toBeGreaterThan(1);
  });
  it('round-trips unicode text', () => {
    const s = 'naïve café — 日本語 🙂\n  spaces';
    expect(tok.decode(tok.encode(s))).toBe(s);
  });
  it('rejects ids outside the vocabulary', () => {
    expect(() => tok.decode([50257])).toThrow(/outside \[0, 50257\)/);
  });
});

describe('ByteTokenizer and CharTokenizer', () => {
  it('bytes round-trip UTF-8', () => {
    const t = new ByteTokenizer();
    expect(t.encode('é')).toEqual([0xc3, 0xa9]);
    expect(t.decode(t.encode('£20 ok'))).toBe('£20 ok');
  });
  it('chars: sorted vocabulary, round trip, loud unknowns', () => {
    const t = CharTokenizer.fromText('hello\n', { eos: '\n' });
    expect(t.chars).toEqual(['\n', 'e', 'h', 'l', 'o']);
    expect(t.eosTokenId).toBe(0);
    expect(t.encode('hole')).toEqual([2, 4, 3, 1]);
    expect(t.decode(t.encode('hello\nhello'))).toBe('hello\nhello');
    expect(() => t.encode('hex')).toThrow(/"x" is not in the vocabulary/);
    const u = CharTokenizer.fromText('ab?', { unknown: '?' });
    expect(u.decode(u.encode('abz'))).toBe('ab?');
    const again = tokenizerFromSpec(t.toJSON());
    expect(again.encode('hello')).toEqual(t.encode('hello'));
    expect(again.eosTokenId).toBe(0);
  });
  it('rejects duplicate or multi-character entries', () => {
    expect(() => new CharTokenizer(['a', 'a'])).toThrow(/appears twice/);
    expect(() => new CharTokenizer(['ab'])).toThrow(/not a single character/);
  });
  it('spec round trip for gpt2 and byte', () => {
    expect(tokenizerFromSpec({ type: 'gpt2' }).vocabSize).toBe(50257);
    expect(tokenizerFromSpec({ type: 'byte' }).vocabSize).toBe(256);
  });
  it('Generator is usable for data sampling (sanity)', () => {
    expect(new Generator(1).nextInt(0, 10)).toBe(new Generator(1).nextInt(0, 10));
  });
});
