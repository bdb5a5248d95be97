import { Generator, randint, type Tensor, tidy } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { applyLora, type LoraModel } from '../src/index.js';
import { maxAbsDiff, TinyNet } from './helpers.js';

const ids = randint(0, 11, [2, 3], { generator: new Generator(9) });

function delta(lora: LoraModel, path: string, name: string): Tensor {
  return tidy(() => lora.layers.get(path)!.deltaWeight(name));
}

function twoAdapters(extra: { useRslora?: boolean; r2?: number } = {}) {
  const net = new TinyNet();
  net.eval();
  const common = {
    targetModules: ['emb', 'fc', 'c_attn'],
    initLoraWeights: false as const,
    useRslora: extra.useRslora,
  };
  const lora = applyLora(net, { ...common, r: 2, loraAlpha: 4, seed: 1 }, 'a');
  lora.addAdapter('b', { ...common, r: extra.r2 ?? 2, loraAlpha: 8, seed: 2 });
  return { net, lora };
}

describe('several adapters', () => {
  it('addAdapter does not activate; setAdapter switches outputs and what trains', async () => {
    const { net, lora } = twoAdapters();
    expect(lora.adapters).toEqual(['a', 'b']);
    expect(lora.activeAdapters).toEqual(['a']);
    const ya = net.forward(ids);
    expect(lora.trainableParameterNames().every((n) => n.includes('.a'))).toBe(true);
    lora.setAdapter('b');
    const yb = net.forward(ids);
    expect(lora.trainableParameterNames().every((n) => n.includes('.b'))).toBe(true);
    expect(await maxAbsDiff(ya, yb)).toBeGreaterThan(1e-4);
    lora.setAdapter('a');
    expect(await maxAbsDiff(net.forward(ids), ya)).toBe(0);
    expect(() => lora.setAdapter('nope')).toThrow(/no adapter 'nope' \(adapters: a, b\)/);
  });

  it('disableAdapters runs the base model (sync and async) and restores', async () => {
    const { net, lora } = twoAdapters();
    const withLora = net.forward(ids);
    const plain = new TinyNet();
    plain.eval();
    const base = plain.forward(ids);
    expect(
      await maxAbsDiff(
        lora.disableAdapters(() => net.forward(ids)),
        base,
      ),
    ).toBe(0);
    const asyncOut = await lora.disableAdapters(async () => net.forward(ids));
    expect(await maxAbsDiff(asyncOut, base)).toBe(0);
    expect(await maxAbsDiff(net.forward(ids), withLora)).toBe(0);
    lora.merge();
    expect(() => lora.disableAdapters(() => 0)).toThrow(/unmerge\(\) first/);
  });

  it('deleteAdapter removes parameters; deleting the last adapter restores plain layers', () => {
    const { net, lora } = twoAdapters();
    lora.deleteAdapter('a');
    expect(net.namedParameters().some(([n]) => n.includes('.a.') || n.endsWith('.a'))).toBe(false);
    expect(lora.activeAdapters).toEqual([]);
    lora.deleteAdapter('b');
    expect(lora.layers.size).toBe(0);
    expect(net.namedParameters().map(([n]) => n)).toEqual(new TinyNet().namedParameters().map(([n]) => n));
  });

  it("addWeightedAdapter 'cat' gives ΔW = Σ wᵢ·ΔWᵢ exactly, also across ranks and with rsLoRA (no double scaling)", async () => {
    for (const opts of [{}, { useRslora: true, r2: 3 }]) {
      const { lora } = twoAdapters(opts);
      lora.addWeightedAdapter(['a', 'b'], [0.7, -1.5], 'ab', 'cat');
      expect(lora.configs.get('ab')!.useRslora).toBe(false);
      for (const path of ['emb', 'fc', 'c_attn']) {
        const expected = tidy(() =>
          delta(lora, path, 'a')
            .mul(0.7)
            .add(delta(lora, path, 'b').mul(-1.5)),
        );
        expect(await maxAbsDiff(delta(lora, path, 'ab'), expected)).toBeLessThan(1e-5);
        expect(lora.layers.get(path)!.specs.get('ab')!.scaling).toBe(1);
      }
    }
  });

  it("addWeightedAdapter 'linear' follows PEFT (√w on A and B) and is exact for one adapter", async () => {
    const { lora } = twoAdapters({ useRslora: true });
    lora.addWeightedAdapter(['a'], [0.25], 'quarter', 'linear');
    expect(
      await maxAbsDiff(
        delta(lora, 'fc', 'quarter'),
        tidy(() => delta(lora, 'fc', 'a').mul(0.25)),
      ),
    ).toBeLessThan(1e-6);
    lora.addWeightedAdapter(['a', 'b'], [1, 1], 'lin', 'linear');
    // PEFT's formula: (Σ√wᵢBᵢ)(Σ√wᵢsᵢAᵢ), cross terms included
    const [Aa, Ba] = lora.layers.get('fc')!.factorParams('a');
    const [Ab, Bb] = lora.layers.get('fc')!.factorParams('b');
    const sa = lora.layers.get('fc')!.specs.get('a')!.scaling;
    const sb = lora.layers.get('fc')!.specs.get('b')!.scaling;
    const peft = tidy(() => Ba.add(Bb).matmul(Aa.mul(sa).add(Ab.mul(sb))));
    expect(await maxAbsDiff(delta(lora, 'fc', 'lin'), peft)).toBeLessThan(1e-5);
    const uneven = twoAdapters({ r2: 3 }).lora;
    expect(() => uneven.addWeightedAdapter(['a', 'b'], [1, 1], 'x', 'linear')).toThrow(
      /'linear' needs equal ranks, got \[2, 3\]/,
    );
    expect(() => uneven.addWeightedAdapter(['a'], [1, 2], 'x')).toThrow(/one weight per adapter/);
  });

  it('several active adapters are summed', async () => {
    const { net, lora } = twoAdapters();
    lora.setAdapter(['a', 'b']);
    const both = net.forward(ids);
    lora.addWeightedAdapter(['a', 'b'], [1, 1], 'sum', 'cat');
    lora.setAdapter('sum');
    expect(await maxAbsDiff(net.forward(ids), both)).toBeLessThan(1e-5);
  });
});
