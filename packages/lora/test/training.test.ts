import { AdamW, F } from '@lowrank/nn';
import { Generator, memory, randint, tidy } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { applyLora, trainableParameters, trainingFootprint } from '../src/index.js';
import { maxAbsDiff, TinyNet } from './helpers.js';

const ids = () => randint(0, 11, [2, 4], { generator: new Generator(5) });

describe('training only what trains', () => {
  it('only LoRA parameters get gradients; base weights stay frozen', () => {
    const net = new TinyNet();
    applyLora(net, { r: 2, targetModules: ['emb', 'fc', 'c_attn'], initLoraWeights: false, seed: 1 });
    const x = ids();
    net.forward(x).square().mean().backward();
    for (const [name, p] of net.namedParameters()) {
      const isLora = /\.lora_(A|B|embedding_A|embedding_B)\./.test(name);
      expect([name, p.requiresGrad, p.grad !== null]).toEqual([name, isLora, isLora]);
    }
  });

  it('the LoRA gradient matches central finite differences (float64 arithmetic on float32 values)', async () => {
    const net = new TinyNet(11, 4, 3, 2, 7);
    const lora = applyLora(net, {
      r: 2,
      loraAlpha: 3,
      targetModules: ['fc'],
      initLoraWeights: false,
      seed: 2,
    });
    const x = ids();
    const loss = () => tidy(() => net.forward(x).square().mean());
    loss().backward();
    const [A] = lora.layers.get('fc')!.factorParams('default');
    const g = await A.grad!.data();
    const values = await A.data();
    const eps = 1e-2;
    for (const i of [0, 3, values.length - 1]) {
      const probe = async (delta: number) => {
        const v = Float32Array.from(values);
        v[i] += delta;
        const { fromTypedArray } = await import('@lowrank/tensor');
        const { noGrad } = await import('@lowrank/autograd');
        noGrad(() => A.copy_(fromTypedArray(v, A.shape)));
        return Number(await loss().item());
      };
      const fd = ((await probe(eps)) - (await probe(-eps))) / (2 * eps);
      expect(Math.abs(fd - g[i])).toBeLessThan(2e-3 * (1 + Math.abs(g[i])));
    }
  });

  it('bias modes: none, all (LayerNorm-style every *bias*), lora_only (adapted layers only)', () => {
    const names = (bias: 'none' | 'all' | 'lora_only') => {
      const net = new TinyNet();
      return applyLora(net, { targetModules: ['fc'], bias })
        .trainableParameterNames()
        .filter((n) => n.endsWith('bias'));
    };
    expect(names('none')).toEqual([]);
    expect(names('all')).toEqual(['fc.base_layer.bias', 'c_attn.bias', 'c_proj.bias']);
    expect(names('lora_only')).toEqual(['fc.base_layer.bias']);
  });

  it('modulesToSave stay trainable (a head trained in full)', () => {
    const net = new TinyNet();
    const lora = applyLora(net, { targetModules: ['fc'], modulesToSave: ['lm_head'] });
    expect(lora.trainableParameterNames()).toEqual([
      'fc.lora_A.default.weight',
      'fc.lora_B.default.weight',
      'lm_head.weight',
    ]);
  });

  it('the optimizer gets only LoRA parameters; a step changes B and nothing frozen; no leaks', async () => {
    const net = new TinyNet();
    const lora = applyLora(net, { r: 2, targetModules: ['fc', 'c_attn'], seed: 4 });
    const frozen = net.getParameter('fc.base_layer.weight').clone();
    const opt = new AdamW(lora.trainableParameters(), { lr: 1e-2 });
    const x = ids();
    const target = randint(0, 11, [2, 4], { generator: new Generator(6) });
    const step = () => {
      tidy(() => F.crossEntropy(net.forward(x).reshape([-1, 11]), target.reshape([-1])).backward());
      opt.step();
      opt.zeroGrad();
    };
    step();
    const before = memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(memory().numTensors).toBe(before);
    expect(await maxAbsDiff(net.getParameter('fc.base_layer.weight'), frozen)).toBe(0);
    const B = lora.layers.get('fc')!.factorParams('default')[1];
    expect(Math.max(...Array.from(await B.data()).map(Math.abs))).toBeGreaterThan(0);
    const report = trainableParameters(net);
    const expected = 2 * (6 + 5) + 2 * (5 + 9); // r·(in + out) per layer
    expect(report.trainable).toBe(expected);
    expect(String(report)).toMatch(
      new RegExp(
        `^trainable params: ${expected} \\|\\| all params: [\\d,]+ \\|\\| trainable%: \\d+\\.\\d{4}$`,
      ),
    );
    const fp = await trainingFootprint(lora, { optimizer: opt });
    expect(fp.optimizerStateBytes).toBe(2 * 4 * expected); // AdamW: two moments per trainable value
    expect(fp.fullOptimizerStateBytes).toBe(2 * 4 * (report.total - expected));
    expect(fp.adapterFileBytes).toBeGreaterThan(4 * expected);
    expect(String(fp)).toMatch(/optimizer state: .* \(LoRA\) vs .* \(full fine-tuning\)/);
  });
});

describe('dropout on the LoRA path only', () => {
  it('with B = 0 the output equals the base even in training mode; with B ≠ 0 masks vary per call', async () => {
    const x = ids();
    const base = new TinyNet();
    base.train();
    const plain = base.forward(x);
    const net = new TinyNet();
    applyLora(net, { targetModules: ['fc', 'c_attn', 'c_proj'], loraDropout: 0.9, seed: 3 });
    net.train();
    expect(await maxAbsDiff(net.forward(x), plain)).toBe(0); // the base path saw no dropout
    const rnd = new TinyNet();
    applyLora(rnd, { targetModules: ['fc'], loraDropout: 0.5, initLoraWeights: false, seed: 3 });
    rnd.train();
    expect(await maxAbsDiff(rnd.forward(x), rnd.forward(x))).toBeGreaterThan(0);
    rnd.eval();
    expect(await maxAbsDiff(rnd.forward(x), rnd.forward(x))).toBe(0);
  });
});

describe('memory and safe merging', () => {
  it('forward (plain and mixed), merge/unmerge and footprint leave no tensors behind', async () => {
    const net = new TinyNet();
    net.eval();
    const lora = applyLora(net, { targetModules: ['emb', 'fc', 'c_attn'], initLoraWeights: false, seed: 1 });
    lora.addAdapter('b', { targetModules: ['fc'], initLoraWeights: false, seed: 2 });
    const x = ids();
    const cycle = async () => {
      tidy(() => void net.forward(x));
      tidy(() => void lora.forward(x, { adapterNames: ['b', null] }));
      lora.merge();
      lora.unmerge();
      await lora.safeMerge();
      lora.unmerge();
      await trainingFootprint(lora);
    };
    await cycle();
    const before = memory().numTensors;
    for (let i = 0; i < 3; i++) await cycle();
    expect(memory().numTensors).toBe(before);
  });

  it('safeMerge refuses non-finite ΔW and merges nothing', async () => {
    const net = new TinyNet();
    const lora = applyLora(net, { targetModules: ['fc', 'c_proj'], initLoraWeights: false, seed: 1 });
    const w = net.getParameter('c_proj.base_layer.weight').clone();
    const { noGrad } = await import('@lowrank/autograd');
    noGrad(() => lora.layers.get('fc')!.factorParams('default')[1].fill_(Number.NaN));
    await expect(lora.safeMerge()).rejects.toThrow(
      /NaN or infinite values in ΔW of fc \(default\); nothing merged/,
    );
    expect(lora.layers.get('c_proj')!.merged.size).toBe(0);
    expect(await maxAbsDiff(net.getParameter('c_proj.base_layer.weight'), w)).toBe(0);
  });
});
