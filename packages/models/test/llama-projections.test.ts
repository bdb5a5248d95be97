import { applyLora } from '@lowrank/lora';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { countKernels } from '../../tensor/test/count-kernels.js';
import { LlamaForCausalLM, sharedInputProjections } from '../src/llama.js';

/**
 * LlamaAttention multiplies q, k and v of one input in one product where the three bases are
 * float32 Linear layers (llama.ts `sharedInputProjections`): counted here, and checked against
 * each layer's own forward, LoRA adapters and every gradient included.
 */
const config = {
  model_type: 'qwen2', // q/k/v biases: the bias is concatenated too
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

async function gradsOf(run: () => lr.Tensor[], x: lr.Tensor, params: lr.Tensor[]): Promise<number[][]> {
  for (const p of [x, ...params]) p.grad = null;
  const outs = run();
  const weights = outs.map((o, i) => lr.randn(o.shape, { generator: new lr.Generator(20 + i) }));
  outs
    .map((o, i) => o.mul(weights[i]).sum())
    .reduce((a, b) => a.add(b))
    .backward();
  const values = [...outs, ...[x, ...params].map((p) => p.grad!)];
  return Promise.all(values.map(async (t) => Array.from(await t.data())));
}

describe('grouped q/k/v projections', () => {
  it('run as one product and match each layer run on its own, outputs and gradients', async () => {
    await lr.init({ backend: 'cpu' });
    const model = new LlamaForCausalLM(config, { seed: 3 });
    // B random too, so the adapters change the outputs and every gradient is nonzero
    const lora = applyLora(model, {
      r: 4,
      loraAlpha: 8,
      targetModules: ['q_proj', 'v_proj'],
      seed: 1,
      initLoraWeights: false,
    });
    const attn = model.model.layers.at(0).self_attn;
    const layers = [attn.q_proj, attn.k_proj, attn.v_proj];
    const x = lr.randn([2, 130, 32], { generator: new lr.Generator(9) }).requiresGrad_(true);
    let outs: lr.Tensor[] = [];
    const counts = countKernels(() => {
      outs = sharedInputProjections(x, layers);
      for (const o of outs) lr.realize(o.storage);
    });
    // one product for the three bases, two LoRA paths (x·Aᵀ, then the expand into the slice)
    expect(counts.matmulEpilogue).toBe(1);
    expect(outs.map((o) => o.shape)).toEqual([
      [2, 130, 32],
      [2, 130, 16],
      [2, 130, 16],
    ]);
    // one row (decoding) takes the one product too
    const one = countKernels(() => {
      for (const o of sharedInputProjections(x.narrow(1, 0, 1), layers)) lr.realize(o.storage);
    });
    expect(one.matmulEpilogue).toBe(1);
    const params = lora.trainableParameters();
    const grouped = await gradsOf(() => sharedInputProjections(x, layers), x, params);
    const separate = await gradsOf(() => layers.map((l) => l.forward(x)), x, params);
    expect(grouped.length).toBe(3 + 1 + params.length);
    for (let i = 0; i < grouped.length; i++) {
      expect(grouped[i].some((v) => v !== 0)).toBe(true);
      // |Δ| ≤ 1e-5 + 1e-4·|separate|: the sums run in another order (one product, not three)
      const worst = Math.max(
        ...grouped[i].map((v, j) => Math.abs(v - separate[i][j]) / (1e-5 + 1e-4 * Math.abs(separate[i][j]))),
      );
      expect(worst).toBeLessThan(1);
    }
  });

  it('a quantized base runs each layer on its own (no float weight to concatenate)', async () => {
    await lr.init({ backend: 'cpu' });
    const model = new LlamaForCausalLM(config, { seed: 3 });
    const attn = model.model.layers.at(0).self_attn;
    const { quantizeModel } = await import('@lowrank/nn');
    await quantizeModel(model, { bits: 'int8' });
    const x = lr.randn([1, 3, 32], { generator: new lr.Generator(2) });
    const counts = countKernels(() => {
      for (const o of sharedInputProjections(x, [attn.q_proj, attn.k_proj, attn.v_proj]))
        lr.realize(o.storage);
    });
    expect(counts.matmulEpilogue ?? 0).toBe(0);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(3);
  });

  it('a mixed-adapter batch through the grouped product equals each sample run alone', async () => {
    await lr.init({ backend: 'cpu' });
    const model = new LlamaForCausalLM({ ...config, num_hidden_layers: 2 }, { seed: 5 });
    model.eval();
    const common = { targetModules: ['q_proj', 'k_proj', 'v_proj'], initLoraWeights: false as const };
    const lora = applyLora(model, { ...common, r: 2, loraAlpha: 4, seed: 1 }, 'a');
    lora.addAdapter('b', { ...common, r: 3, loraAlpha: 2, seed: 2 });
    const names = ['a', 'b', null];
    const ids = lr.randint(0, 40, [names.length, 90], { dtype: 'int32', generator: new lr.Generator(3) });
    const logits = (out: unknown) => (out as { logits: lr.Tensor }).logits;
    const mixed = await logits(lora.forward(ids, { adapterNames: names })).data();
    const per = mixed.length / names.length;
    for (const [i, n] of names.entries()) {
      const one = ids.narrow(0, i, 1);
      if (n !== null) lora.setAdapter(n);
      const alone = n === null ? lora.disableAdapters(() => model.forward(one)) : model.forward(one);
      const y = await logits(alone).data();
      const err = Math.max(...Array.from(y).map((v, k) => Math.abs(v - mixed[i * per + k])));
      expect(err, `sample ${i} (${n})`).toBeLessThan(1e-5);
    }
  });
});
