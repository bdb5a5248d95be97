import {
  Embedding,
  LayerNorm,
  Linear,
  Module,
  ModuleDict,
  ModuleList,
  nn,
  Parameter,
  ReLU,
  Sequential,
} from '@lowrank/nn';
import { Generator, ones, randn, type Tensor, tensor, tidy, zeros } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { webgpuUnavailable } from './helpers.js';

const unavailable = await webgpuUnavailable();

/** A GPT-2-shaped toy: transformer.{wte, h.N.{ln_1, attn.{c_attn, c_proj}}, ln_f} + lm_head (tied). */
class Attn extends Module {
  readonly c_attn = this.registerModule('c_attn', new Linear(4, 12, { generator: new Generator(1) }));
  readonly c_proj = this.registerModule('c_proj', new Linear(4, 4, { generator: new Generator(2) }));
  forward(x: Tensor): Tensor {
    return this.c_proj.forward(this.c_attn.forward(x).narrow(-1, 0, 4));
  }
}

class Block extends Module {
  readonly ln_1 = this.registerModule('ln_1', new LayerNorm(4));
  readonly attn = this.registerModule('attn', new Attn());
  forward(x: Tensor): Tensor {
    return x.add(this.attn.forward(this.ln_1.forward(x)));
  }
}

class Toy extends Module {
  readonly transformer = this.registerModule(
    'transformer',
    new ModuleDict<Module>({
      wte: new Embedding(10, 4, { generator: new Generator(3) }),
      h: new ModuleList([new Block(), new Block()]),
      ln_f: new LayerNorm(4),
    }),
  );
  readonly lm_head = this.registerModule('lm_head', new Linear(4, 10, { bias: false }));
  readonly mask = this.registerBuffer('mask', ones([3, 3]).tril());
  readonly scratch = this.registerBuffer('scratch', zeros([2]), { persistent: false });
  constructor() {
    super();
    // weight tying, as GPT-2: one tensor under two names (re-registering updates the field)
    const wte = this.transformer.get('wte') as Embedding;
    const untied = this.lm_head.weight;
    this.lm_head.registerParameter('weight', wte.weight);
    untied.dispose();
  }
}

const KEYS = [
  'transformer.wte.weight',
  'transformer.h.0.ln_1.weight',
  'transformer.h.0.ln_1.bias',
  'transformer.h.0.attn.c_attn.weight',
  'transformer.h.0.attn.c_attn.bias',
  'transformer.h.0.attn.c_proj.weight',
  'transformer.h.0.attn.c_proj.bias',
  'transformer.h.1.ln_1.weight',
  'transformer.h.1.ln_1.bias',
  'transformer.h.1.attn.c_attn.weight',
  'transformer.h.1.attn.c_attn.bias',
  'transformer.h.1.attn.c_proj.weight',
  'transformer.h.1.attn.c_proj.bias',
  'transformer.ln_f.weight',
  'transformer.ln_f.bias',
];

describe('Module', () => {
  it('names parameters with dotted paths; tied weights appear once in parameters(), twice in stateDict()', () => {
    const m = new Toy();
    expect(m.namedParameters().map(([n]) => n)).toEqual(KEYS);
    expect(m.parameters()).toHaveLength(KEYS.length);
    // PyTorch's order: own parameters and buffers, then children depth first
    expect(Object.keys(m.stateDict())).toEqual(['mask', ...KEYS, 'lm_head.weight']);
    const sd = m.stateDict();
    expect(sd['lm_head.weight']).toBe(sd['transformer.wte.weight']);
    expect(Object.keys(sd)).toContain('mask');
    expect(Object.keys(sd)).not.toContain('scratch');
    expect(m.namedBuffers().map(([n]) => n)).toEqual(['mask', 'scratch']);
    expect(m.namedModules().map(([n]) => n)).toEqual([
      '',
      'transformer',
      'transformer.wte',
      'transformer.h',
      'transformer.h.0',
      'transformer.h.0.ln_1',
      'transformer.h.0.attn',
      'transformer.h.0.attn.c_attn',
      'transformer.h.0.attn.c_proj',
      'transformer.h.1',
      'transformer.h.1.ln_1',
      'transformer.h.1.attn',
      'transformer.h.1.attn.c_attn',
      'transformer.h.1.attn.c_proj',
      'transformer.ln_f',
      'lm_head',
    ]);
    expect(m.namedChildren().map(([n]) => n)).toEqual(['transformer', 'lm_head']);
    expect(m.children()).toEqual([m.transformer, m.lm_head]);
    expect(m.getParameter('transformer.h.1.attn.c_proj.bias').shape).toEqual([4]);
    expect(m.numParameters()).toBe(10 * 4 + 2 * (8 + 48 + 12 + 16 + 4) + 8);
  });

  it('getSubmodule / setSubmodule replace a layer in place, fields included', () => {
    const m = new Toy();
    const block = m.getSubmodule('transformer.h.1') as Block;
    const old = block.attn.c_attn;
    const replacement = new Linear(4, 12, { bias: false });
    expect(m.setSubmodule('transformer.h.1.attn.c_attn', replacement)).toBe(old);
    expect(block.attn.c_attn).toBe(replacement);
    expect(m.getSubmodule('transformer.h.1.attn.c_attn')).toBe(replacement);
    expect(m.namedParameters().map(([n]) => n)).not.toContain('transformer.h.1.attn.c_attn.bias');
    expect(() => m.getSubmodule('transformer.h.7')).toThrow(
      /getSubmodule: 'transformer.h.7': ModuleList has no submodule '7'/,
    );
    expect(() => m.setSubmodule('transformer.nope', replacement)).toThrow(/setSubmodule/);
    // forward uses the new layer
    const y = block.forward(ones([1, 4]));
    expect(y.shape).toEqual([1, 4]);
  });

  it('train()/eval() reach every submodule; apply visits children first', () => {
    const m = new Toy();
    m.eval();
    expect(m.modules().every((x) => !x.training)).toBe(true);
    m.train();
    expect(m.modules().every((x) => x.training)).toBe(true);
    const order: string[] = [];
    new Sequential(new ReLU(), new Sequential(new ReLU())).apply((x) => order.push(x.constructor.name));
    expect(order).toEqual(['ReLU', 'ReLU', 'Sequential', 'Sequential']);
  });

  it('requiresGrad_(false) freezes, true unfreezes; numParameters counts trainable ones', () => {
    const m = new Toy();
    (m.getSubmodule('transformer.h') as Module).requiresGrad_(false);
    expect(m.getParameter('transformer.h.0.ln_1.weight').requiresGrad).toBe(false);
    expect(m.getParameter('transformer.wte.weight').requiresGrad).toBe(true);
    expect(m.numParameters({ trainableOnly: true })).toBe(40 + 8);
    m.requiresGrad_(true);
    expect(m.numParameters({ trainableOnly: true })).toBe(m.numParameters());
  });

  it('loadStateDict copies values and lists missing, unexpected and mis-shaped keys', async () => {
    const a = new Toy();
    const b = new Toy();
    const sd = a.stateDict();
    b.loadStateDict(sd);
    expect(Array.from(await b.getParameter('transformer.h.0.attn.c_attn.weight').data())).toEqual(
      Array.from(await sd['transformer.h.0.attn.c_attn.weight'].data()),
    );
    const bad: Record<string, Tensor> = { ...sd, extra: zeros([1]) };
    delete bad['transformer.ln_f.bias'];
    bad['transformer.h.0.ln_1.weight'] = zeros([5]);
    let message = '';
    try {
      b.loadStateDict(bad);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(
      /^loadStateDict: Toy: mis-shaped keys:\n {2}transformer\.h\.0\.ln_1\.weight: checkpoint \[5\], model \[4\]/,
    );
    expect(message).toMatch(/missing keys: transformer\.ln_f\.bias/);
    expect(message).toMatch(/unexpected keys: extra/);
    // non-strict: loads what matches, reports the rest; mis-shaped keys still throw
    delete bad['transformer.h.0.ln_1.weight'];
    bad['transformer.h.0.ln_1.weight'] = sd['transformer.h.0.ln_1.weight'];
    const r = b.loadStateDict(bad, { strict: false });
    expect(r).toEqual({ missingKeys: ['transformer.ln_f.bias'], unexpectedKeys: ['extra'] });
    expect(() => b.loadStateDict({ 'lm_head.weight': zeros([1, 1]) }, { strict: false })).toThrow(
      /mis-shaped/,
    );
    // host arrays (a checkpoint reader's output) load too
    b.loadStateDict(
      { 'transformer.ln_f.bias': { dtype: 'float32', shape: [4], data: new Float32Array([1, 2, 3, 4]) } },
      { strict: false },
    );
    expect(await b.getParameter('transformer.ln_f.bias').toArray()).toEqual([1, 2, 3, 4]);
  });

  it('Parameter marks a leaf as trainable and keeps it out of tidy; names are checked', () => {
    const p = tidy(() => Parameter(randn([2])));
    expect(p.requiresGrad).toBe(true);
    expect(p.isDisposed).toBe(false);
    const kept = tidy(() => new Linear(2, 2));
    expect(kept.weight.isDisposed).toBe(false);
    class Bad extends Module {}
    expect(() => new Bad().registerParameter('a.b', zeros([1]))).toThrow(/invalid name 'a\.b'/);
    const m = new Bad();
    m.registerModule('x', new ReLU());
    expect(() => m.registerParameter('x', zeros([1]))).toThrow(/already registered as another kind/);
    expect(() => tensor([1], { dtype: 'int32' }).requiresGrad_()).toThrow();
  });

  it('containers: Sequential chains, ModuleList iterates, ModuleDict by key; toString shows the tree', () => {
    const seq = new Sequential(new Linear(2, 3), new ReLU(), new Linear(3, 1));
    expect(seq.forward(ones([4, 2])).shape).toEqual([4, 1]);
    expect(seq.length).toBe(3);
    expect(seq.at(-1)).toBeInstanceOf(Linear);
    expect(seq.namedParameters().map(([n]) => n)).toEqual(['0.weight', '0.bias', '2.weight', '2.bias']);
    seq.setSubmodule('1', new nn.Tanh());
    expect(seq.at(1)).toBeInstanceOf(nn.Tanh);
    const list = new ModuleList([new ReLU(), new ReLU()]);
    expect([...list]).toHaveLength(2);
    list.append(new ReLU());
    expect(list.at(2)).toBeInstanceOf(ReLU);
    expect(() => list.at(3)).toThrow(/out of range/);
    const dict = new ModuleDict({ a: new ReLU() });
    dict.set('b', new nn.SiLU());
    expect(dict.keys()).toEqual(['a', 'b']);
    expect(dict.has('b')).toBe(true);
    expect(() => dict.get('c')).toThrow(/no module 'c'/);
    expect(seq.toString()).toBe(
      'Sequential(\n  (0): Linear(inFeatures=2, outFeatures=3, bias=true)\n  (1): Tanh()\n  (2): Linear(inFeatures=3, outFeatures=1, bias=true)\n)',
    );
  });

  it('zeroGrad drops gradients; dispose frees parameters', () => {
    const m = new Linear(2, 2);
    tidy(() =>
      m
        .forward(ones([1, 2]))
        .sum()
        .backward(),
    );
    expect(m.weight.grad).not.toBeNull();
    m.zeroGrad();
    expect(m.weight.grad).toBeNull();
    m.dispose();
    expect(m.weight.isDisposed).toBe(true);
  });

  it.skipIf(unavailable !== null)(
    `to('webgpu') moves parameters and buffers, keeps ties and fields${unavailable ? ` (skipped: WebGPU unavailable: ${unavailable})` : ''}`,
    async () => {
      const m = new Toy();
      const before = await m.getParameter('transformer.h.0.attn.c_attn.weight').toArray();
      const oldWeight = m.lm_head.weight;
      await m.to('webgpu');
      expect(oldWeight.isDisposed).toBe(true);
      for (const t of Object.values(m.stateDict())) expect(t.device).toBe('webgpu');
      expect(m.lm_head.weight).toBe((m.transformer.get('wte') as Embedding).weight);
      expect(m.lm_head.weight.requiresGrad).toBe(true);
      expect(m.mask.device).toBe('webgpu');
      expect(await m.getParameter('transformer.h.0.attn.c_attn.weight').toArray()).toEqual(before);
      const y = (m.getSubmodule('transformer.h.0') as Block).forward(ones([1, 4], { device: 'webgpu' }));
      expect(y.device).toBe('webgpu');
      await m.to('cpu');
      expect(m.lm_head.weight.device).toBe('cpu');
    },
  );
});
