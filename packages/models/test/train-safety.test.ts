import { noGrad } from '@lowrank/autograd';
import { applyLora } from '@lowrank/lora';
import { GPT2LMHeadModel, LMTrainer } from '@lowrank/models';
import { describe, expect, it } from 'vitest';

// no dropout: the two runs compared must draw nothing random but their batches
const config = {
  vocab_size: 16,
  n_positions: 16,
  n_embd: 8,
  n_layer: 1,
  n_head: 2,
  resid_pdrop: 0,
  embd_pdrop: 0,
  attn_pdrop: 0,
};
const tokens = Int32Array.from({ length: 400 }, (_, i) => (i * 7 + (i >> 3)) % 16);
const options = { steps: 10, batchSize: 2, blockSize: 8, lr: 0.05, seed: 1 };
const trainer = (seed = 3) => new LMTrainer(new GPT2LMHeadModel(config, { seed }), [], options);
function make(seed = 3, extra: { allowNonFinite?: boolean } = {}): LMTrainer {
  const model = new GPT2LMHeadModel(config, { seed });
  return new LMTrainer(model, model.parameters(), { ...options, ...extra });
}

describe('LMTrainer safety', () => {
  it('an evaluation and a step started together run one after the other, in call order', async () => {
    expect(() => trainer()).toThrow(/no trainable parameters/);
    const reference = make();
    const before = await reference.evaluate(tokens, 2);
    await reference.trainStep(tokens);
    const after = await reference.evaluate(tokens, 2);
    expect(after).not.toBe(before); // the step changes the loss: the test can tell them apart

    const t = make();
    const [e1, , e2] = await Promise.all([t.evaluate(tokens, 2), t.trainStep(tokens), t.evaluate(tokens, 2)]);
    expect([e1, e2]).toEqual([before, after]);
    expect(t.model.training).toBe(true);
  });

  it('a NaN loss stops the run with a clear error; allowNonFinite keeps going', async () => {
    const poison = (t: LMTrainer) => noGrad(() => t.model.parameters()[0].fill_(Number.NaN)); // the token embedding
    const t = make();
    poison(t);
    await expect(t.trainStep(tokens)).rejects.toThrow(/the loss of step 1 is NaN: stopping .*allowNonFinite/);
    expect(t.step).toBe(0);
    const k = make(3, { allowNonFinite: true });
    poison(k);
    expect(await k.trainStep(tokens)).toBeNaN();
    expect(k.step).toBe(1);
  });

  it('each trainer gives its model its own dropout stream: runs in alternation equal runs alone', async () => {
    const withDropout = { ...config, resid_pdrop: 0.2, embd_pdrop: 0.2, attn_pdrop: 0.2 };
    const build = (seed: number) => {
      const model = new GPT2LMHeadModel(withDropout, { seed });
      return new LMTrainer(model, model.parameters(), { ...options, seed });
    };
    const alone = async (seed: number) => {
      const t = build(seed);
      for (let i = 0; i < 3; i++) await t.trainStep(tokens);
      return t.losses.map(([, l]) => l);
    };
    const [a, b] = [await alone(1), await alone(2)];
    const ta = build(1);
    const tb = build(2);
    for (let i = 0; i < 3; i++) {
      await ta.trainStep(tokens);
      await tb.trainStep(tokens);
    }
    expect(ta.losses.map(([, l]) => l)).toEqual(a);
    expect(tb.losses.map(([, l]) => l)).toEqual(b);
    // the dropout is live: the same model and batches without it give another loss
    const plain = new GPT2LMHeadModel(config, { seed: 1 });
    const tp = new LMTrainer(plain, plain.parameters(), { ...options, seed: 1 });
    expect(await tp.trainStep(tokens)).not.toBe(a[0]);
  });

  it('a step while disableAdapters(async …) runs is refused with a clear message', async () => {
    const model = new GPT2LMHeadModel(config, { seed: 5 });
    const lora = applyLora(model, { r: 2, loraAlpha: 4, targetModules: ['c_attn'], seed: 1 });
    const t = new LMTrainer(model, lora.trainableParameters(), options);
    let release = () => {};
    const pending = lora.disableAdapters(() => new Promise<void>((resolve) => (release = resolve)));
    await expect(t.trainStep(tokens)).rejects.toThrow(/switched off by a disableAdapters call still running/);
    release();
    await pending;
    expect(await t.trainStep(tokens)).toBeGreaterThan(0);
    expect(t.step).toBe(1);
  });

  it('token ids outside [0, vocab_size) are refused before the step, naming the first one', async () => {
    const t = make();
    for (const bad of [-1, 16]) {
      const stream = Int32Array.from(tokens);
      stream[37] = bad;
      const message = new RegExp(`token ${bad} at position 37 is outside \\[0, 16\\)`);
      await expect(t.trainStep(stream)).rejects.toThrow(message);
      await expect(t.evaluate(stream, 1)).rejects.toThrow(message);
    }
    expect(t.step).toBe(0);
    expect(await t.trainStep(tokens)).toBeGreaterThan(0);
  });
});
