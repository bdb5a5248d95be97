import '@lowrank/autograd';
import { noGrad } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { generate, generateNoCache } from '../src/generate.js';
import { AutoModelForCausalLM, fromPretrained } from '../src/node.js';
import { PromptCache } from '../src/prompt-cache.js';

/**
 * A KV cache kept across `generate` calls (`PromptCache`, for chats): each call runs only what
 * its prompt adds to the cached tokens, and gives the tokens of a call without any cache
 * (`generateNoCache`, the whole sequence every step) — on the Llama and GPT-2 fixtures.
 */
const fixtures = new URL('./fixtures/', import.meta.url).pathname;

describe('PromptCache', () => {
  for (const [name, load] of [
    [
      'peft-llama-tiny (Llama, GQA, RoPE)',
      () => AutoModelForCausalLM.fromPretrained(`${fixtures}peft-llama-tiny/base`),
    ],
    ['peft-gpt2-tiny (GPT-2)', () => fromPretrained(`${fixtures}peft-gpt2-tiny/base`)],
  ] as const) {
    it(`${name}: a growing conversation reuses its prefix, a diverging prompt keeps only what it shares, the tokens are those without a cache`, async () => {
      const model = await load();
      model.eval();
      const live = lr.memory().numTensors;
      const cache = new PromptCache();
      const opts = { maxNewTokens: 6, greedy: true, eosTokenId: null, cache } as const;
      const p1 = [1, 5, 9, 200, 17, 3];
      const a = await generate(model, p1, opts);
      expect(cache.reused).toBe(0);
      expect(a.tokens).toEqual((await generateNoCache(model, p1, { ...opts, cache: undefined })).tokens);
      // the cache holds the prompt and every reply token but the last (it was never fed)
      expect(cache.tokens).toEqual([...p1, ...a.tokens.slice(0, -1)]);
      expect(
        cache.kv?.every((c) => c.k.shape[2] === cache.tokens.length && c.v.shape[2] === cache.tokens.length),
      ).toBe(true);
      // the next turn: history + reply + a new message
      const p2 = [...p1, ...a.tokens, 40, 41, 42];
      const b = await generate(model, p2, opts);
      expect(cache.reused).toBe(p1.length + a.tokens.length - 1);
      expect(b.tokens).toEqual((await generateNoCache(model, p2, { ...opts, cache: undefined })).tokens);
      // every cached key and value is the one a fresh forward over the cached tokens computes
      // (right positions for RoPE and GPT-2's learned position embeddings)
      const fresh = noGrad(() =>
        lr.tidy(
          () => model.forward(lr.tensor([cache.tokens], { dtype: 'int32' }), { useCache: true }).present!,
        ),
      );
      for (let l = 0; l < fresh.length; l++)
        for (const part of ['k', 'v'] as const) {
          const want = (await fresh[l][part].data()) as Float32Array;
          const got = (await cache.kv![l][part].data()) as Float32Array;
          let worst = 0;
          for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
          expect(worst, `layer ${l} ${part}`).toBeLessThan(1e-5);
        }
      for (const c of fresh) lr.dispose(c.k, c.v);
      // a prompt that leaves the history at position 3 (an edited message): 3 positions kept
      const p3 = [1, 5, 9, 7, 7, 7, 7];
      const c = await generate(model, p3, opts);
      expect(cache.reused).toBe(3);
      expect(c.tokens).toEqual((await generateNoCache(model, p3, { ...opts, cache: undefined })).tokens);
      // the same prompt again: all but its last token come from the cache
      const d = await generate(model, p3, opts);
      expect(cache.reused).toBe(p3.length - 1);
      expect(d.tokens).toEqual(c.tokens);
      // nothing in common: afresh
      await generate(model, [100, 101], opts);
      expect(cache.reused).toBe(0);
      cache.dispose();
      expect(cache.kv).toBeUndefined();
      expect(lr.memory().numTensors).toBe(live);
      model.dispose();
    });
  }
});
