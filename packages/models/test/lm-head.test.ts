import '@lowrank/autograd';
import { applyLora } from '@lowrank/lora';
import type { Tensor } from '@lowrank/tensor';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { GPT2LMHeadModel, lmHeadLoss, lmLoss } from '../src/gpt2.js';
import { LlamaForCausalLM } from '../src/llama.js';

/**
 * forward(ids, { labels }) takes the fused LM-head loss: the same loss and gradients as the
 * logits path (lmLoss over forward(ids).logits), logits computed only when read, and the
 * [B, T, V] logits gone from the training step's peak memory.
 */

const gpt2 = { vocab_size: 301, n_positions: 16, n_embd: 16, n_layer: 1, n_head: 2 };
const llama = {
  model_type: 'llama',
  vocab_size: 211,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
};

type Model = GPT2LMHeadModel | LlamaForCausalLM;

function batch(v: number): { ids: Tensor; labels: Tensor } {
  const g = new lr.Generator(9);
  const ids = Array.from({ length: 2 }, () => Array.from({ length: 7 }, () => Math.floor(g.nextFloat() * v)));
  const labels = ids.map((row, b) => row.map((id, t) => (b === 1 && t < 3 ? -100 : id)));
  return { ids: lr.tensor(ids, { dtype: 'int32' }), labels: lr.tensor(labels, { dtype: 'int32' }) };
}

/** Loss and every parameter's gradient of one step (fused: forward with labels; else lmLoss over the logits). */
async function step(model: Model, ids: Tensor, labels: Tensor, fused: boolean) {
  model.zeroGrad();
  const loss = lr.tidy(() =>
    fused ? model.forward(ids, { labels }).loss! : lmLoss(model.forward(ids).logits, labels),
  );
  loss.backward();
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of model.namedParameters()) grads.set(name, (await p.grad!.data()) as Float32Array);
  const value = (await loss.item()) as number;
  loss.dispose();
  model.zeroGrad();
  return { value, grads };
}

function expectSame(a: Awaited<ReturnType<typeof step>>, b: Awaited<ReturnType<typeof step>>): void {
  expect(Math.abs(a.value - b.value)).toBeLessThan(1e-5);
  for (const [name, g] of a.grads) {
    const h = b.grads.get(name)!;
    let worst = 0;
    for (let i = 0; i < g.length; i++)
      worst = Math.max(worst, Math.abs(g[i] - h[i]) / (1e-4 + Math.abs(h[i])));
    expect(worst, name).toBeLessThan(1e-2);
  }
}

describe('causal-LM forward with labels (fused LM-head loss)', () => {
  const cases: [string, () => Model, number][] = [
    [
      'GPT-2 (tied head: wte gets the head and the embedding gradient)',
      () => new GPT2LMHeadModel(gpt2, { seed: 1 }).eval(),
      gpt2.vocab_size,
    ],
    ['Llama (untied lm_head Linear)', () => new LlamaForCausalLM(llama, { seed: 1 }), llama.vocab_size],
    [
      'Llama (tied)',
      () => new LlamaForCausalLM({ ...llama, tie_word_embeddings: true }, { seed: 1 }),
      llama.vocab_size,
    ],
  ];
  for (const [name, make, v] of cases) {
    it(`${name}: loss and every gradient equal the logits path`, async () => {
      const model = make();
      const { ids, labels } = batch(v);
      expectSame(await step(model, ids, labels, true), await step(model, ids, labels, false));
      lr.dispose(ids, labels);
    });
  }

  it('a LoRA-wrapped lm_head keeps the logits path: the adapter is in the loss', async () => {
    const model = new LlamaForCausalLM(llama, { seed: 1 });
    const { ids, labels } = batch(llama.vocab_size);
    const base = (await lr.tidy(() => model.forward(ids, { labels }).loss!).item()) as number;
    // B random too (PEFT's init_lora_weights=False), so the adapter changes the logits
    applyLora(model, { targetModules: ['lm_head'], r: 2, loraAlpha: 16, initLoraWeights: false, seed: 4 });
    const withLabels = (await lr.tidy(() => model.forward(ids, { labels }).loss!).item()) as number;
    const viaLogits = (await lr.tidy(() => lmLoss(model.forward(ids).logits, labels)).item()) as number;
    expect(Math.abs(withLabels - viaLogits)).toBeLessThan(1e-6);
    expect(Math.abs(withLabels - base)).toBeGreaterThan(1e-3);
    lr.dispose(ids, labels);
  });

  it('logits are computed on first read, equal forward(ids).logits, and say why when read too late', async () => {
    const model = new GPT2LMHeadModel(gpt2, { seed: 2 }).eval(); // dropout off: two forwards agree
    const { ids, labels } = batch(gpt2.vocab_size);
    const want = lr.tidy(() => model.forward(ids).logits);
    const got = lr.tidy(() => {
      const { logits, loss } = model.forward(ids, { labels }); // destructuring reads the getter
      expect(loss!.shape).toEqual([]);
      return logits;
    });
    expect(Array.from((await got.data()) as Float32Array)).toEqual(
      Array.from((await want.data()) as Float32Array),
    );
    const late = lr.tidy(() => model.forward(ids, { labels }));
    lr.dispose(late.logits, late.loss); // returned from tidy: logits were computed and kept
    const out = lr.tidy(() => {
      const o = model.forward(ids, { labels });
      return { loss: o.loss!, read: () => o.logits };
    });
    expect(out.read).toThrow(
      /GPT2LMHeadModel: the logits of a forward with labels are computed when first read/,
    );
    lr.dispose(ids, labels, want, got, out.loss);
  });

  it('lmHeadLoss equals lmLoss over the projected logits, and checks the labels', async () => {
    const h = lr.randn([2, 5, 8]);
    const w = lr.randn([40, 8]);
    const labels = lr.tensor(
      [
        [1, 2, 3, 4, 5],
        [-100, 7, 8, 39, 0],
      ],
      { dtype: 'int32' },
    );
    const a = (await lmHeadLoss(h, w, labels, { chunkSize: 3 }).item()) as number;
    const b = (await lr.tidy(() => lmLoss(h.matmul(w.T), labels)).item()) as number;
    expect(Math.abs(a - b)).toBeLessThan(1e-5);
    expect(() => lmHeadLoss(h, w, lr.tensor([[1, 2]], { dtype: 'int32' }))).toThrow(
      /lmHeadLoss: labels must be \[2, 5\]/,
    );
    lr.dispose(h, w, labels);
  });

  it('a training step with labels no longer holds the [B, T, V] logits at its peak', async () => {
    const model = new GPT2LMHeadModel({ ...gpt2, vocab_size: 4001 }, { seed: 3 }).eval();
    // LoRA-like: the tied head (and embeddings) frozen, so no [V, C] gradient either
    model.transformer.wte.weight.requiresGrad_(false);
    const { ids, labels } = batch(4001);
    const peak = (fused: boolean) => {
      const base = lr.memory().numBytes;
      lr.resetPeakMemory();
      lr.tidy(() => {
        const loss = fused ? model.forward(ids, { labels }).loss! : lmLoss(model.forward(ids).logits, labels);
        loss.backward();
      });
      model.zeroGrad();
      return lr.peakMemory() - base;
    };
    const logitsBytes = 2 * 7 * 4001 * 4;
    const fused = peak(true);
    const unfused = peak(false);
    expect(unfused - fused).toBeGreaterThan(logitsBytes);
    lr.dispose(ids, labels);
  });
});
