import * as lr from 'lowrank';
import { beforeAll, describe, expect, it } from 'vitest';
import { bannedNext, greedyByLength } from '../e2e/batched-greedy.js';
import { bleuTokens, corpusBleu } from '../e2e/bleu.js';

const t = (s: string): string[] => s.split(' ');

describe('corpusBleu (hand-computed)', () => {
  it('sums clipped n-gram counts over the corpus, multi-reference', () => {
    // hyp 1 against refs A, B: p1 5/6 (the ×2 clipped to 2, sat unmatched), p2 3/5, p3 1/4, p4 0/3;
    // hyp 2 equals ref B: 7/7, 6/6, 5/5, 4/4. Corpus: 12/13, 9/11, 6/9, 4/7; c = r = 13, BP 1.
    const s = corpusBleu(
      [t('the cat sat on the mat'), t('there is a cat on the mat')],
      [[t('the cat is on the mat'), t('there is a cat on the mat')], [t('there is a cat on the mat')]],
    );
    expect(s.precisions).toEqual([12 / 13, 9 / 11, 6 / 9, 4 / 7]);
    expect(s.brevityPenalty).toBe(1);
    expect([s.hypothesisLength, s.referenceLength]).toEqual([13, 13]);
    expect(s.bleu).toBeCloseTo((864 / 3003) ** 0.25, 12); // 0.73238…
  });

  it('a short hypothesis pays exp(1 − r/c); a sentence with no 4-gram match alone scores 0', () => {
    const short = corpusBleu([t('the cat is on')], [[t('the cat is on the mat')]]);
    expect(short.precisions).toEqual([1, 1, 1, 1]);
    expect(short.bleu).toBeCloseTo(Math.exp(1 - 6 / 4), 12); // 0.6065…
    expect(corpusBleu([t('the cat sat on the mat')], [[t('the cat is on the mat')]]).bleu).toBe(0);
  });

  it('the closest reference length sets r, the shorter one on a tie', () => {
    // c = 5, references of 4 and 6 tokens: both 1 away, r = 4, so no penalty
    const s = corpusBleu([t('the cat is on the')], [[t('the cat is on'), t('the cat is on the mat')]]);
    expect(s.referenceLength).toBe(4);
    expect(s.bleu).toBe(1);
    const far = corpusBleu(
      [t('the cat is on the')],
      [[t('the cat is on the mat'), t('the cat is on the mat too')]],
    );
    expect(far.bleu).toBeCloseTo(Math.exp(1 - 6 / 5), 12);
  });

  it('tokens are lower-cased whitespace pieces; mismatched lists throw', () => {
    expect(bleuTokens(' The Eagle ,  near\tBurger King . ')).toEqual([
      'the',
      'eagle',
      ',',
      'near',
      'burger',
      'king',
      '.',
    ]);
    expect(() => corpusBleu([t('a')], [])).toThrow(/1 hypotheses but 0 reference lists/);
    expect(() => corpusBleu([t('a')], [[]])).toThrow(/hypothesis 0 has no reference/);
  });
});

describe('greedyByLength', () => {
  let model: lr.LlamaForCausalLM;
  beforeAll(async () => {
    await lr.init({ backend: 'cpu' });
    model = new lr.LlamaForCausalLM(
      {
        model_type: 'llama',
        vocab_size: 40,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 64,
      },
      { seed: 3 },
    );
    // larger weights than the init's 0.02, so greedy paths differ between prompts
    for (const p of model.parameters()) if (p.rank === 2) lr.noGrad(() => p.mul_(40));
  });

  it('gives each prompt the tokens of generate(greedy) alone, cut before the first stop id', async () => {
    const prompts = [
      [1, 2, 3],
      [4, 5, 6],
      [7, 8],
      [9, 10, 11, 12],
      [13, 14],
    ];
    const stop = 5;
    const batched = await greedyByLength(model, prompts, { maxNewTokens: 12, stopIds: new Set([stop]) });
    for (let i = 0; i < prompts.length; i++) {
      const alone = await lr.generate(model, prompts[i], {
        maxNewTokens: 12,
        greedy: true,
        eosTokenId: stop,
      });
      const expected = alone.stoppedBy === 'eos' ? alone.tokens.slice(0, -1) : alone.tokens;
      expect(batched[i]).toEqual(expected);
    }
    // distinct continuations: the batch rows are not one sequence copied
    expect(new Set(batched.map((b) => b.join(','))).size).toBeGreaterThan(2);
  });

  it('noRepeatNgram: the tokens of an uncached, unbatched greedy loop that skips n-grams repeated in the reply', async () => {
    expect([...bannedNext([5, 6, 7, 5, 6], 3)]).toEqual([7]);
    expect([...bannedNext([1, 1, 1], 2)]).toEqual([1]);
    expect(bannedNext([1, 2], 4).size).toBe(0);
    const prompts = [
      [1, 2, 3],
      [4, 5, 6],
      [7, 8],
    ];
    const got = await greedyByLength(model, prompts, {
      maxNewTokens: 16,
      stopIds: new Set(),
      noRepeatNgram: 2,
    });
    const plain = await greedyByLength(model, prompts, { maxNewTokens: 16, stopIds: new Set() });
    for (let i = 0; i < prompts.length; i++) {
      // the reference: the whole sequence through the model each step, logits on the host
      const seq = [...prompts[i]];
      for (let k = 0; k < 16; k++) {
        const ids = lr.tensor([seq], { dtype: 'int32' });
        const logits = lr.noGrad(() => model.forward(ids, { lastOnly: true }).logits);
        const row = (await logits.data()) as Float32Array;
        const banned = new Set<number>();
        const reply = seq.slice(prompts[i].length); // the ban looks at the reply only
        for (let j = 0; j + 1 < reply.length; j++)
          if (reply[j] === reply[reply.length - 1]) banned.add(reply[j + 1]);
        let best = -1;
        for (let v = 0; v < row.length; v++) if (!banned.has(v) && (best < 0 || row[v] > row[best])) best = v;
        seq.push(best);
      }
      expect(got[i]).toEqual(seq.slice(prompts[i].length));
      // no bigram twice in the reply
      const full = got[i];
      const bigrams = full.slice(1).map((t, j) => `${full[j]},${t}`);
      expect(new Set(bigrams).size).toBe(bigrams.length);
    }
    // it changed something: the plain greedy replies repeat a bigram
    expect(plain.some((p, i) => p.join() !== got[i].join())).toBe(true);
  });

  it('refuses a prompt that would run past the context', async () => {
    await expect(
      greedyByLength(model, [[1, 2, 3]], { maxNewTokens: 62, stopIds: new Set() }),
    ).rejects.toThrow(/prompt 0 \(3 tokens\) \+ 62 new tokens exceeds the context \(64\)/);
  });
});
