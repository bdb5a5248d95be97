import '@lowrank/autograd';
import { noGrad as noGradTest } from '@lowrank/autograd';
import { memory, tensor } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { generate, generateNoCache } from '../src/generate.js';
import { GPT2LMHeadModel, lmLoss } from '../src/gpt2.js';

const tiny = { vocab_size: 37, n_positions: 24, n_embd: 16, n_layer: 2, n_head: 2 };

describe('GPT-2 KV cache and generation', () => {
  const model = new GPT2LMHeadModel(tiny, { seed: 3 }).eval(); // dropout off
  // larger weights than the 0.02 init so the distribution is far from uniform
  noGradTest(() => {
    for (const [, p] of model.namedParameters()) p.mul_(8);
  });

  it('cached logits equal full-sequence logits at every position', async () => {
    const ids = [5, 1, 30, 7, 7, 2, 11, 36];
    const full = noGradTest(() => model.forward(tensor([ids], { dtype: 'int32' })).logits);
    const want = await full.data();
    full.dispose();
    // prompt of 3, then one token at a time
    let step = noGradTest(() =>
      model.forward(tensor([ids.slice(0, 3)], { dtype: 'int32' }), { useCache: true }),
    );
    const V = tiny.vocab_size;
    const got: number[] = Array.from(await step.logits.data());
    for (let t = 3; t < ids.length; t++) {
      const past = step.present!;
      step.logits.dispose();
      step = noGradTest(() => model.forward(tensor([[ids[t]]], { dtype: 'int32' }), { past }));
      for (const c of past) {
        c.k.dispose();
        c.v.dispose();
      }
      got.push(...(await step.logits.data()));
    }
    expect(got.length).toBe(ids.length * V);
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
    expect(maxDiff).toBeLessThan(1e-5);
  });

  it('greedy and sampled generation equal the no-cache reference, and are seeded', async () => {
    const prompt = [1, 2, 3];
    for (const o of [{ greedy: true }, { temperature: 0.8, topK: 10, seed: 4 }, { topP: 0.9, seed: 9 }]) {
      const a = await generate(model, prompt, { maxNewTokens: 12, eosTokenId: null, ...o });
      const b = await generateNoCache(model, prompt, { maxNewTokens: 12, eosTokenId: null, ...o });
      expect(a.tokens).toEqual(b.tokens);
      expect(a.tokens).toHaveLength(12);
    }
    const s1 = await generate(model, prompt, { maxNewTokens: 15, seed: 1, eosTokenId: null });
    const s2 = await generate(model, prompt, { maxNewTokens: 15, seed: 1, eosTokenId: null });
    const s3 = await generate(model, prompt, { maxNewTokens: 15, seed: 2, eosTokenId: null });
    expect(s1.tokens).toEqual(s2.tokens);
    expect(s1.tokens).not.toEqual(s3.tokens);
  });

  it('stops at eos, honours maxNewTokens, runs past the context window, leaks nothing', async () => {
    const before = memory().numTensors;
    const greedy = await generate(model, [4], { maxNewTokens: 8, greedy: true, eosTokenId: null });
    const eos = greedy.tokens[2];
    const r = await generate(model, [4], { maxNewTokens: 8, greedy: true, eosTokenId: eos });
    expect(r.stoppedBy).toBe('eos');
    expect(r.tokens.at(-1)).toBe(eos);
    expect(r.tokens.length).toBeLessThanOrEqual(3);
    const long = await generate(model, [4, 5], { maxNewTokens: 40, seed: 0, eosTokenId: null }); // > n_positions 24
    expect(long.tokens).toHaveLength(40);
    expect(long.stoppedBy).toBe('maxNewTokens');
    expect((await generate(model, [4], { maxNewTokens: 0 })).tokens).toEqual([]);
    expect(memory().numTensors).toBe(before);
  });

  it('rejects bad arguments clearly', async () => {
    await expect(generate(model, [], { maxNewTokens: 3 })).rejects.toThrow(/prompt is empty/);
    await expect(generate(model, [99], { maxNewTokens: 3 })).rejects.toThrow(/outside \[0, 37\)/);
    await expect(generate(model, [1], { maxNewTokens: -1 })).rejects.toThrow(/maxNewTokens/);
    await expect(generate(model, [1], { maxNewTokens: 2, topP: 2 })).rejects.toThrow(/topP/);
  });
});

describe('lmLoss (HF causal-LM loss)', () => {
  it('shifts labels by one, ignores -100 and averages over the rest', async () => {
    // logits [1, 3, 2]: positions 0 and 1 predict labels 1 and 2; the last position predicts nothing
    const logits = tensor([
      [
        [0, 1],
        [2, 0],
        [5, 5],
      ],
    ]);
    const l = lmLoss(logits, tensor([[1, 0, 1]], { dtype: 'int32' }));
    const ce = (z: number[], y: number): number => Math.log(Math.exp(z[0]) + Math.exp(z[1])) - z[y];
    expect((await l.item()) as number).toBeCloseTo((ce([0, 1], 0) + ce([2, 0], 1)) / 2, 6);
    const ignored = lmLoss(logits, tensor([[1, -100, 1]], { dtype: 'int32' }));
    expect((await ignored.item()) as number).toBeCloseTo(ce([2, 0], 1), 6);
    expect(() => lmLoss(logits, tensor([[1, 0]], { dtype: 'int32' }))).toThrow(/labels must be \[1, 3\]/);
  });
});
