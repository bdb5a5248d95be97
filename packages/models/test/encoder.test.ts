import '@lowrank/autograd';
import { applyLora, trainableParameters } from '@lowrank/lora';
import { AdamW } from '@lowrank/nn';
import { Generator, memory, tensor, tidy } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { EncoderForSequenceClassification, encoderConfig } from '../src/encoder.js';

/**
 * A synthetic classification task: is token 3 anywhere in the sequence? The answer must travel
 * from that position to the first token through attention, so LoRA on q and v has to learn it
 * (with the classifier head, trained in full as PEFT's `modules_to_save`).
 */
function batch(gen: Generator, n: number, T: number): { ids: number[][]; labels: number[] } {
  const ids: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const row = [0]; // [CLS]
    for (let t = 1; t < T; t++) row.push(4 + gen.nextInt(0, 12));
    const y = gen.nextInt(0, 2);
    if (y) row[1 + gen.nextInt(0, T - 1)] = 3;
    ids.push(row);
    labels.push(y);
  }
  return { ids, labels };
}

describe('EncoderForSequenceClassification with LoRA on query and value', () => {
  it('names modules like HF RoBERTa and validates its config', () => {
    const m = new EncoderForSequenceClassification({ vocab_size: 20, num_hidden_layers: 1 });
    const names = m.namedParameters().map(([n]) => n);
    expect(names).toContain('roberta.embeddings.word_embeddings.weight');
    expect(names).toContain('roberta.encoder.layer.0.attention.self.query.weight');
    expect(names).toContain('roberta.encoder.layer.0.attention.output.LayerNorm.bias');
    expect(names).toContain('classifier.out_proj.weight');
    expect(() => encoderConfig({ hidden_size: 30, num_attention_heads: 4 })).toThrow(/divisible/);
    m.dispose();
  });

  it('padding does not change the logits of the real tokens', async () => {
    const m = new EncoderForSequenceClassification(
      { vocab_size: 20, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 },
      { seed: 1 },
    ).eval();
    const a = m.forward(tensor([[0, 5, 6, 7]], { dtype: 'int32' })).logits;
    const b = m.forward(tensor([[0, 5, 6, 7, 1, 1]], { dtype: 'int32' }), {
      attentionMask: tensor([[1, 1, 1, 1, 0, 0]], { dtype: 'int32' }),
    }).logits;
    const [x, y] = [await a.data(), await b.data()];
    for (let i = 0; i < x.length; i++) expect(y[i]).toBeCloseTo(x[i], 5);
    m.dispose();
  });

  it('trains on a tiny synthetic task with only LoRA (q, v) and the head', async () => {
    const model = new EncoderForSequenceClassification(
      {
        vocab_size: 16,
        max_position_embeddings: 16,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        hidden_dropout_prob: 0,
        attention_probs_dropout_prob: 0,
      },
      { seed: 0 },
    );
    const frozenBefore = await model
      .getParameter('roberta.encoder.layer.0.attention.self.query.weight')
      .data();
    const lora = applyLora(model, {
      r: 4,
      loraAlpha: 8,
      targetModules: ['query', 'value'],
      modulesToSave: ['classifier'],
      seed: 0,
    });
    const names = lora.trainableParameterNames();
    expect(names.some((n) => n.includes('query.lora_A'))).toBe(true);
    expect(names.some((n) => n.includes('value.lora_B'))).toBe(true);
    expect(names.some((n) => n.includes('key.lora'))).toBe(false);
    expect(names.every((n) => n.includes('lora_') || n.startsWith('classifier'))).toBe(true);
    const report = trainableParameters(model);
    expect(report.trainable).toBeLessThan(report.total / 4);

    const opt = new AdamW(lora.trainableParameters(), { lr: 1e-2, weightDecay: 0 });
    const gen = new Generator(0);
    const T = 8;
    const accuracy = async (): Promise<number> => {
      model.eval();
      const { ids, labels } = batch(new Generator(99), 128, T);
      const pred = tidy(() => model.forward(tensor(ids, { dtype: 'int32' })).logits.argmax(-1));
      const p = await pred.data();
      pred.dispose();
      model.train();
      return labels.filter((y, i) => p[i] === y).length / labels.length;
    };
    const acc0 = await accuracy();
    const before = memory().numTensors;
    const losses: number[] = [];
    for (let step = 0; step < 80; step++) {
      const { ids, labels } = batch(gen, 32, T);
      const loss = tidy(() => {
        const l = model.forward(tensor(ids, { dtype: 'int32' }), {
          labels: tensor(labels, { dtype: 'int32' }),
        }).loss!;
        l.backward();
        return l;
      });
      opt.step();
      opt.zeroGrad();
      losses.push((await loss.item()) as number);
      loss.dispose();
    }
    const acc1 = await accuracy();
    expect(acc0).toBeLessThan(0.7);
    expect(acc1).toBeGreaterThan(0.9);
    const mean = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(losses.slice(-20))).toBeLessThan(0.5 * mean(losses.slice(0, 20)));
    // the base weights did not move; only optimizer state was added
    const frozenAfter = await model
      .getParameter('roberta.encoder.layer.0.attention.self.query.base_layer.weight')
      .data();
    expect(Array.from(frozenAfter)).toEqual(Array.from(frozenBefore));
    expect(memory().numTensors - before).toBe(2 * lora.trainableParameters().length);
  }, 60_000);
});
