import { LayerNorm, Module } from '@lowrank/nn';
import { describe, expect, it } from 'vitest';
import { applyLora, type LoraConfig, LoraConfigError, resolveConfig } from '../src/index.js';
import { TinyNet } from './helpers.js';

const adapted = (config: LoraConfig, net: Module = new TinyNet()) => [
  ...applyLora(net, config).layers.keys(),
];

class Stack extends Module {
  constructor() {
    super();
    for (const i of [0, 1, 2]) this.registerModule(`layer${i}`, new Module0());
    const h = this.registerModule('h', new (class extends Module {})());
    for (const i of [0, 1, 2]) h.registerModule(String(i), new TinyNet());
    this.registerModule('ln', new LayerNorm(4));
  }
}
class Module0 extends Module {}

describe('LoraConfig validation', () => {
  it.each([
    [{ r: 0 }, /r must be a positive integer, got 0/],
    [{ r: 2.5 }, /r must be a positive integer, got 2.5/],
    [{ loraAlpha: Number.NaN }, /loraAlpha must be a finite number/],
    [{ loraDropout: 1 }, /loraDropout must be in \[0, 1\), got 1/],
    [{ bias: 'some' }, /bias must be 'none', 'all' or 'lora_only', got 'some'/],
    [{ initLoraWeights: 'pissa' }, /initLoraWeights must be true, false or 'gaussian'/],
    [{ targetModules: [] }, /targetModules is an empty list/],
    [{ targetModules: '(' }, /targetModules '\(' is not a valid regex/],
    [{ rankPattern: { fc: -1 } }, /rankPattern\['fc'\] must be a positive integer/],
    [{ layersToTransform: [-1] }, /layersToTransform entries must be non-negative integers/],
    [
      { fusedSlices: { c_attn: [false, false] } },
      /fusedSlices\['c_attn'\] must be a list of booleans with at least one true/,
    ],
    [{ lora_alpha: 8 }, /unknown option 'lora_alpha' \(PEFT's snake_case names are camelCase here\)/],
  ])('%o is refused', (extra, message) => {
    expect(() => resolveConfig({ targetModules: ['fc'], ...(extra as object) } as LoraConfig)).toThrow(
      message,
    );
    expect(() => resolveConfig({ targetModules: ['fc'], ...(extra as object) } as LoraConfig)).toThrow(
      LoraConfigError,
    );
  });

  it('needs targetModules, fills PEFT defaults', () => {
    expect(() => resolveConfig({} as LoraConfig)).toThrow(/targetModules is required/);
    expect(resolveConfig({ targetModules: ['fc'] })).toMatchObject({
      r: 8,
      loraAlpha: 8,
      loraDropout: 0,
      bias: 'none',
      initLoraWeights: true,
      useRslora: false,
    });
  });
});

describe('target matching (PEFT semantics)', () => {
  it('a list matches exact names or dotted suffixes', () => {
    expect(adapted({ targetModules: ['fc', 'c_attn'] })).toEqual(['fc', 'c_attn']);
    expect(adapted({ targetModules: ['h.1.fc'] }, new Stack())).toEqual(['h.1.fc']);
    expect(adapted({ targetModules: ['fc'] }, new Stack())).toEqual(['h.0.fc', 'h.1.fc', 'h.2.fc']);
  });

  it('a string is a full-match regex, a RegExp is tested as given, a predicate decides', () => {
    expect(adapted({ targetModules: 'c_.*' })).toEqual(['c_attn', 'c_proj']);
    expect(adapted({ targetModules: 'h\\.[02]\\.c_proj' }, new Stack())).toEqual([
      'h.0.c_proj',
      'h.2.c_proj',
    ]);
    expect(adapted({ targetModules: /proj/ })).toEqual(['c_proj']);
    expect(adapted({ targetModules: (name) => name.length === 2 })).toEqual(['fc']);
  });

  it("'all-linear' takes every Linear/Conv1D but the output head", () => {
    expect(adapted({ targetModules: 'all-linear' })).toEqual(['fc', 'c_attn', 'c_proj']);
  });

  it('layersToTransform keeps only the listed layer indices', () => {
    expect(adapted({ targetModules: ['c_attn'], layersToTransform: [0, 2] }, new Stack())).toEqual([
      'h.0.c_attn',
      'h.2.c_attn',
    ]);
    expect(
      adapted({ targetModules: ['c_attn'], layersToTransform: 1, layersPattern: 'h' }, new Stack()),
    ).toEqual(['h.1.c_attn']);
  });

  it('rankPattern / alphaPattern / rsLoRA set each layer’s scaling', () => {
    const lora = applyLora(new TinyNet(), {
      r: 4,
      loraAlpha: 8,
      targetModules: ['fc', 'c_proj'],
      rankPattern: { c_proj: 16 },
      alphaPattern: { 'c_.*': 4 },
    });
    expect(lora.layers.get('fc')!.specs.get('default')).toMatchObject({ r: 4, alpha: 8, scaling: 2 });
    expect(lora.layers.get('c_proj')!.specs.get('default')).toMatchObject({ r: 16, alpha: 4, scaling: 0.25 });
    const rs = applyLora(new TinyNet(), { r: 16, loraAlpha: 8, targetModules: ['fc'], useRslora: true });
    expect(rs.layers.get('fc')!.specs.get('default')!.scaling).toBe(2);
  });

  it('initialisation: A kaiming-uniform (|a| ≤ 1/√in) and B = 0; gaussian A ~ N(0, 1/r²)', async () => {
    const lora = applyLora(new TinyNet(11, 64, 64), { r: 8, targetModules: ['fc'], seed: 1 });
    const [A, B] = lora.layers.get('fc')!.factorParams('default');
    const a = await A.data();
    expect(Math.max(...Array.from(a).map(Math.abs))).toBeLessThanOrEqual(1 / 8);
    expect(Math.max(...Array.from(a).map(Math.abs))).toBeGreaterThan(0.1);
    expect(Array.from(await B.data()).every((v) => v === 0)).toBe(true);
    const g = applyLora(new TinyNet(11, 64, 64), {
      r: 8,
      targetModules: ['fc'],
      initLoraWeights: 'gaussian',
      seed: 1,
    });
    const ga = await g.layers.get('fc')!.factorParams('default')[0].data();
    const std = Math.sqrt(Array.from(ga).reduce((s, v) => s + v * v, 0) / ga.length);
    expect(std).toBeGreaterThan(0.1);
    expect(std).toBeLessThan(0.15); // 1/r = 0.125 (PEFT: normal_(std=1/r))
  });

  it('errors name the problem: nothing matched, unsupported layer, applied twice', () => {
    expect(() => adapted({ targetModules: ['q_proj'] })).toThrow(
      /Target modules \[q_proj\] not found in the base model \(its Linear\/Conv1D\/Embedding names end in: emb, fc, c_attn, c_proj, lm_head\)/,
    );
    expect(() => adapted({ targetModules: ['c_attn'], layersToTransform: [7] }, new Stack())).toThrow(
      /not found in the base model in layers \[7\]/,
    );
    expect(() => adapted({ targetModules: ['ln'] }, new Stack())).toThrow(
      /LoRA does not support: ln \(LayerNorm\)/,
    );
    const net = new TinyNet();
    applyLora(net, { targetModules: ['fc'] });
    expect(() => applyLora(net, { targetModules: ['fc'] })).toThrow(
      /already has LoRA layers; use handle\.addAdapter/,
    );
    expect(() => applyLora(new TinyNet(), { targetModules: ['emb'], fusedSlices: { emb: [true] } })).toThrow(
      /fusedSlices cannot apply to the Embedding 'emb'/,
    );
  });
});
