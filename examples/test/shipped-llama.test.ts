import { readFileSync } from 'node:fs';
import { HFTokenizer } from '@lowrank/models';
import { AutoModelForCausalLM, loadTokenizer } from '@lowrank/models/node';
import { parseSafetensors } from '@lowrank/nn';
import * as lr from 'lowrank';
import { describe, expect, it } from 'vitest';

/**
 * The demo's shipped base model, examples/checkpoints/llama-shakespeare-brown: its tokenizer.json
 * through lowrank's HF tokenizer path gives the ids the Python `tokenizers` 0.23.2 library gave
 * on the GPU machine when it trained it (train_tokenizer.py wrote the fixture), and the F16
 * weights load as the Llama its config describes.
 */
const dir = new URL('../checkpoints/llama-shakespeare-brown/', import.meta.url).pathname;
const fixture = JSON.parse(
  readFileSync(new URL('./fixtures/llama-shakespeare-brown-tokenizer-cases.json', import.meta.url), 'utf8'),
) as { vocab_size: number; cases: { text: string; ids: number[]; decoded: string }[] };

describe('shipped Llama tokenizer', () => {
  const tok = loadTokenizer(dir, 4096);
  it('is the HF tokenizer with <|endoftext|> (id 0) as eos', () => {
    expect(tok).toBeInstanceOf(HFTokenizer);
    expect(tok.vocabSize).toBe(fixture.vocab_size);
    expect(tok.eosTokenId).toBe(0);
  });
  it.each(fixture.cases.map((c) => [JSON.stringify(c.text).slice(0, 50), c] as const))(
    'encodes %s as Python tokenizers does',
    (_, c) => {
      expect(tok.encode(c.text)).toEqual(c.ids);
      expect(tok.decode(c.ids)).toBe(c.decoded);
    },
  );
});

describe('shipped Llama weights', () => {
  it('are F16 and load as a 5,770,496-parameter Llama with a tied head', async () => {
    const st = parseSafetensors(new Uint8Array(readFileSync(`${dir}model.safetensors`)));
    const dtypes = new Set(Object.values(st.tensors).map((t) => t.sourceDtype));
    expect([...dtypes]).toEqual(['F16']);
    await lr.init({ backend: 'cpu' });
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    expect(model).toBeInstanceOf(lr.LlamaForCausalLM);
    const c = (model as lr.LlamaForCausalLM).config;
    const [d, L, I, V] = [c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size];
    const kv = c.num_key_value_heads * c.head_dim;
    // per layer: q, o (d × d), k, v (d × kv), gate, up, down (d × I), two RMSNorms; embeddings, final norm
    expect(model.numParameters()).toBe(V * d + L * (2 * d * d + 2 * d * kv + 3 * d * I + 2 * d) + d);
    expect(model.numParameters()).toBe(5_770_496);
    expect((model as lr.LlamaForCausalLM).lm_head).toBeNull();
    // every F16 value read back exactly: the embedding row of id 0 against the file's bits
    const raw = st.tensors['model.embed_tokens.weight'].data as Float32Array;
    const loaded = (await (model as lr.LlamaForCausalLM).model.embed_tokens.weight.data()) as Float32Array;
    expect(Array.from(loaded.subarray(0, d))).toEqual(Array.from(raw.subarray(0, d)));
    for (let i = 0; i < d; i++) expect(lr.f16Value(lr.f16Bits(raw[i]))).toBe(raw[i]);
  });
});
