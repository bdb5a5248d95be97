import {
  CausalSelfAttention,
  Conv1D,
  Dropout,
  Embedding,
  F,
  initializers,
  LayerNorm,
  Linear,
  MLP,
  MultiheadAttention,
  nn,
  RMSNorm,
} from '@lowrank/nn';
import { type Device, Generator, ones, type Tensor, tensor, zeros } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { expectClose, type Json, num, obj, REF, ref, webgpuUnavailable } from './helpers.js';

const L = obj(REF.layers);
const unavailable = await webgpuUnavailable();

/** sum(y · g).backward() with the stored upstream gradient. */
function backward(y: Tensor, g: Json, device: Device): void {
  y.mul(ref(g, { device })).sum().backward();
}

function layerSuite(device: Device, full: boolean): void {
  const tol = device === 'cpu' ? { rtol: 1e-4, atol: 1e-5 } : { rtol: 1e-3, atol: 1e-4 };
  const r = (v: Json | undefined, requiresGrad = false) => ref(v, { device, requiresGrad });

  it('Linear matches torch (forward and gradients)', async () => {
    const c = obj(L.linear);
    const m = new Linear(5, 4, { device });
    m.loadStateDict({ weight: r(c.w), bias: r(c.b) });
    const x = r(c.x, true);
    const y = m.forward(x);
    await expectClose(y, c.y, tol);
    backward(y, c.g, device);
    await expectClose(x.grad!, c.dx, tol);
    await expectClose(m.weight.grad!, c.dw, tol);
    await expectClose(m.bias!.grad!, c.db, tol);
  });

  it('Linear without bias matches torch', async () => {
    const c = obj(L.linear_nobias);
    const m = new Linear(5, 4, { device, bias: false });
    expect(m.bias).toBeNull();
    expect(Object.keys(m.stateDict())).toEqual(['weight']);
    m.loadStateDict({ weight: r(c.w) });
    const x = r(c.x, true);
    const y = m.forward(x);
    await expectClose(y, c.y, tol);
    backward(y, c.g, device);
    await expectClose(m.weight.grad!, c.dw, tol);
  });

  it('Conv1D (weights [in, out]) matches torch.addmm', async () => {
    const c = obj(L.conv1d);
    const m = new Conv1D(4, 5, { device });
    expect(m.weight.shape).toEqual([5, 4]);
    m.loadStateDict({ weight: r(c.w), bias: r(c.b) });
    const x = r(c.x, true);
    const y = m.forward(x);
    await expectClose(y, c.y, tol);
    backward(y, c.g, device);
    await expectClose(x.grad!, c.dx, tol);
    await expectClose(m.weight.grad!, c.dw, tol);
    await expectClose(m.bias.grad!, c.db, tol);
  });

  it('Embedding matches torch (repeated ids accumulate gradients)', async () => {
    const c = obj(L.embedding);
    const m = new Embedding(10, 4, { device });
    m.loadStateDict({ weight: r(c.w) });
    const y = m.forward(ref(c.ids, { device, dtype: 'int32' }));
    await expectClose(y, c.y, tol);
    backward(y, c.g, device);
    await expectClose(m.weight.grad!, c.dw, tol);
  });

  it('LayerNorm matches torch (1-D and 2-D normalized shapes)', async () => {
    for (const [key, shape] of [
      ['layer_norm', [6]],
      ['layer_norm_2d', [3, 4]],
    ] as const) {
      const c = obj(L[key]);
      const m = new LayerNorm(shape, { eps: num(c.eps), device });
      m.loadStateDict({ weight: r(c.w), bias: r(c.b) });
      const x = r(c.x, true);
      const y = m.forward(x);
      await expectClose(y, c.y, tol);
      backward(y, c.g, device);
      await expectClose(x.grad!, c.dx, { rtol: 1e-3, atol: 1e-4 });
      await expectClose(m.weight!.grad!, c.dw, tol);
      await expectClose(m.bias!.grad!, c.db, tol);
    }
  });

  it('RMSNorm matches the Llama definition in torch', async () => {
    const c = obj(L.rms_norm);
    const m = new RMSNorm(6, { device });
    expect(m.eps).toBe(num(c.eps));
    m.loadStateDict({ weight: r(c.w) });
    const x = r(c.x, true);
    const y = m.forward(x);
    await expectClose(y, c.y, tol);
    backward(y, c.g, device);
    await expectClose(x.grad!, c.dx, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(m.weight!.grad!, c.dw, tol);
  });

  it('activation modules match torch (values and derivatives)', async () => {
    const c = obj(L.activations);
    const mods: Record<string, nn.UnaryModule> = {
      relu: new nn.ReLU(),
      gelu: new nn.GELU(),
      gelu_tanh: new nn.GELU('tanh'),
      silu: new nn.SiLU(),
      tanh: new nn.Tanh(),
      sigmoid: new nn.Sigmoid(),
    };
    for (const [name, m] of Object.entries(mods)) {
      const x = r(c.x, true);
      const y = m.forward(x);
      await expectClose(y, obj(c[name]).y, { rtol: 1e-5, atol: 1e-6 });
      y.sum().backward();
      await expectClose(x.grad!, obj(c[name]).dx, { rtol: 1e-4, atol: 1e-5 });
    }
  });

  it('CausalSelfAttention matches nanoGPT attention in torch', async () => {
    const c = obj(L.causal_self_attention);
    const m = new CausalSelfAttention(num(c.n_embd), num(c.n_head), { device });
    m.loadStateDict({
      'c_attn.weight': r(c.c_attn_w),
      'c_attn.bias': r(c.c_attn_b),
      'c_proj.weight': r(c.c_proj_w),
      'c_proj.bias': r(c.c_proj_b),
    });
    const x = r(c.x, true);
    const y = m.forward(x);
    await expectClose(y, c.y, tol);
    if (!full) return;
    backward(y, c.g, device);
    await expectClose(x.grad!, c.dx, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(m.c_attn.weight.grad!, c.d_c_attn_w, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(m.c_attn.bias!.grad!, c.d_c_attn_b, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(m.c_proj.weight.grad!, c.d_c_proj_w, { rtol: 1e-3, atol: 1e-4 });
    // an extra padding mask combines with the causal one
    const p = obj(L.causal_self_attention_padded);
    await expectClose(m.forward(x, { attnMask: ref(p.pad, { device }) }), p.y, tol);
  });

  it('scaledDotProductAttention with a float mask matches torch', async () => {
    const c = obj(L.sdpa_float_mask);
    const [q, k, v] = [r(c.q, true), r(c.k, true), r(c.v, true)];
    const y = F.scaledDotProductAttention(q, k, v, { attnMask: r(c.mask) });
    await expectClose(y, c.y, tol);
    backward(y, c.g, device);
    await expectClose(q.grad!, c.dq, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(k.grad!, c.dk, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(v.grad!, c.dv, { rtol: 1e-3, atol: 1e-4 });
  });

  it("MultiheadAttention loads torch's state dict and matches it (masks, weights, gradients)", async () => {
    const c = obj(L.multihead_attention);
    const m = new MultiheadAttention(num(c.embed_dim), num(c.num_heads), { device });
    const state = obj(c.state);
    m.loadStateDict(Object.fromEntries(Object.keys(state).map((k) => [k, r(state[k])])));
    const query = r(c.query, true);
    const key = r(c.key, true);
    const [out, weights] = m.forward(query, key, r(c.value), {
      attnMask: ref(c.attn_mask, { device }),
      keyPaddingMask: ref(c.key_padding_mask, { device }),
    });
    await expectClose(out, c.out, tol);
    await expectClose(weights!, c.weights, tol);
    if (!full) return;
    backward(out, c.g, device);
    await expectClose(query.grad!, c.dquery, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(key.grad!, c.dkey, { rtol: 1e-3, atol: 1e-4 });
  });

  it('MLP (c_fc → gelu_tanh → c_proj) matches torch', async () => {
    const c = obj(L.mlp);
    const m = new MLP(4, { hiddenFeatures: 16, device });
    m.loadStateDict({
      'c_fc.weight': r(c.c_fc_w),
      'c_fc.bias': r(c.c_fc_b),
      'c_proj.weight': r(c.c_proj_w),
      'c_proj.bias': r(c.c_proj_b),
    });
    const x = r(c.x, true);
    const y = m.forward(x);
    await expectClose(y, c.y, tol);
    backward(y, c.g, device);
    await expectClose(x.grad!, c.dx, { rtol: 1e-3, atol: 1e-4 });
    await expectClose(m.c_fc.weight.grad!, c.d_c_fc_w, { rtol: 1e-3, atol: 1e-4 });
  });

  it('Dropout: seeded masks, 1/(1 − p) scaling, identity in eval, p = 0 and p = 1', async () => {
    const x = ones([4000], { device });
    const d = new Dropout(0.25, { generator: new Generator(7) });
    const a = Array.from(await d.forward(x).data());
    const dropped = a.filter((v) => v === 0).length / a.length;
    expect(dropped).toBeGreaterThan(0.22);
    expect(dropped).toBeLessThan(0.28);
    for (const v of a) expect(v === 0 || Math.abs(v - 1 / 0.75) < 1e-6).toBe(true);
    const again = new Dropout(0.25, { generator: new Generator(7) });
    expect(Array.from(await again.forward(x).data())).toEqual(a);
    d.eval();
    expect(d.forward(x)).toBe(x);
    expect(Array.from(await new Dropout(1).forward(x).data()).every((v) => v === 0)).toBe(true);
    expect(new Dropout(0).forward(x)).toBe(x);
    expect(() => new Dropout(1.5)).toThrow(/p must be in \[0, 1\]/);
  });
}

describe('layers against PyTorch on cpu', () => layerSuite('cpu', true));

if (unavailable) {
  describe('layers on webgpu', () => {
    it.skip(`skipped: WebGPU unavailable (${unavailable})`, () => {});
  });
} else {
  describe('layers against PyTorch on webgpu', () => layerSuite('webgpu', false));
}

describe('initialisers', () => {
  it("Linear's default init is U(±1/√in) for weight and bias, seeded", async () => {
    const bound = num(obj(REF.init).linear_bound_in_7);
    const a = new Linear(7, 300, { generator: new Generator(3) });
    const w = Array.from(await a.weight.data());
    const b = Array.from(await a.bias!.data());
    for (const v of [...w, ...b]) expect(Math.abs(v)).toBeLessThanOrEqual(bound);
    // uniform on (−b, b): mean ≈ 0, variance ≈ b²/3, extremes near the bound
    const mean = w.reduce((s, v) => s + v, 0) / w.length;
    const varc = w.reduce((s, v) => s + (v - mean) ** 2, 0) / w.length;
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(varc / (bound ** 2 / 3)).toBeCloseTo(1, 1);
    expect(Math.max(...w)).toBeGreaterThan(0.98 * bound);
    const same = new Linear(7, 300, { generator: new Generator(3) });
    expect(Array.from(await same.weight.data())).toEqual(w);
  });

  it('Embedding ~ N(0, 1); LayerNorm ones/zeros; kaiming/xavier bounds; gain table', async () => {
    const e = Array.from(await new Embedding(100, 50, { generator: new Generator(1) }).weight.data());
    const mean = e.reduce((s, v) => s + v, 0) / e.length;
    const sd = Math.sqrt(e.reduce((s, v) => s + (v - mean) ** 2, 0) / e.length);
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(sd - 1)).toBeLessThan(0.05);
    const ln = new LayerNorm(5);
    expect(await ln.weight!.toArray()).toEqual([1, 1, 1, 1, 1]);
    expect(await ln.bias!.toArray()).toEqual([0, 0, 0, 0, 0]);
    const t = zeros([20, 30]);
    initializers.kaimingUniform_(t, { nonlinearity: 'relu', generator: new Generator(2) });
    const kb = Math.sqrt(2) * Math.sqrt(3 / 30);
    const kv = Array.from(await t.data());
    expect(Math.max(...kv.map(Math.abs))).toBeLessThanOrEqual(kb);
    expect(Math.max(...kv.map(Math.abs))).toBeGreaterThan(0.95 * kb);
    initializers.xavierUniform_(t, { generator: new Generator(2) });
    const xb = Math.sqrt(6 / 50);
    expect(Math.max(...Array.from(await t.data()).map(Math.abs))).toBeLessThanOrEqual(xb);
    expect(initializers.calculateGain('tanh')).toBeCloseTo(5 / 3);
    expect(initializers.calculateGain('leaky_relu', Math.sqrt(5))).toBeCloseTo(Math.sqrt(1 / 3));
    expect(initializers.calculateFanInAndFanOut([4, 3, 5])).toEqual({ fanIn: 15, fanOut: 20 });
    expect(() => initializers.calculateFanInAndFanOut([4])).toThrow(/at least 2 dims/);
    initializers.constant_(t, 2.5);
    expect(Array.from(await t.data()).every((v) => v === 2.5)).toBe(true);
  });

  it('initialising a parameter in place works while gradients are recorded', async () => {
    const m = new Linear(3, 2);
    initializers.zeros_(m.weight);
    expect(Array.from(await m.weight.data())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(m.weight.requiresGrad).toBe(true);
  });
});

describe('functional forms', () => {
  it('linear/layerNorm/crossEntropy reject mismatched shapes with the op name', () => {
    expect(() => F.linear(zeros([2, 3]), zeros([4, 5]))).toThrow(
      /linear: input's last dim must be in_features=5/,
    );
    expect(() => F.layerNorm(zeros([2, 3]), [4])).toThrow(/layerNorm: input \[2,3\] does not end with/);
    expect(() => F.crossEntropy(zeros([2, 3]), tensor([1, 2, 0], { dtype: 'int32' }))).toThrow(
      /crossEntropy: targets must be int32 \[2\]/,
    );
    expect(() => new CausalSelfAttention(10, 3)).toThrow(/not divisible/);
  });

  it('a fully masked attention row gives NaN, as in PyTorch', async () => {
    const q = ones([1, 2, 2]);
    const mask = tensor([
      [true, false],
      [false, false],
    ]);
    const y = Array.from(await F.scaledDotProductAttention(q, q, q, { attnMask: mask }).data());
    expect(y.slice(0, 2)).toEqual([1, 1]);
    expect(y.slice(2).every(Number.isNaN)).toBe(true);
  });

  it('inference under noGrad, or a recorded forward inside tidy, leaks no tensors', async () => {
    const { memory, tidy } = await import('@lowrank/tensor');
    const m = new nn.Sequential(new Linear(4, 8), new nn.GELU(), new LayerNorm(8), new Linear(8, 2));
    const attn = new CausalSelfAttention(8, 2);
    const x = ones([2, 3, 4]);
    const before = memory().numTensors;
    const { noGrad } = await import('@lowrank/autograd');
    for (let i = 0; i < 3; i++) {
      noGrad(() => m.forward(x)).dispose();
      const h = zeros([2, 3, 8]);
      tidy(() => attn.forward(h)).dispose(); // parameters require grad: the graph lives in the scope
      h.dispose();
    }
    expect(memory().numTensors).toBe(before);
  });
});
