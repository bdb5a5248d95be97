import { noGrad } from '@lowrank/autograd';
import {
  Conv1D,
  F,
  GELU,
  Linear,
  modelFootprint,
  optim,
  QuantizedLinear,
  quantizeModel,
  Sequential,
} from '@lowrank/nn';
import {
  compile,
  dequantizeData,
  dispose,
  fromTypedArray,
  Generator,
  quantizeData,
  randint,
  randn,
  type Tensor,
  tidy,
} from '@lowrank/tensor';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { applyLora, exportAdapter, LoraLinear } from '../src/index.js';
import { maxAbs, maxAbsDiff, TinyNet } from './helpers.js';

/**
 * LoRA over a quantized frozen base (issue #18, QLoRA): `quantizeModel` replaces Linear/Conv1D
 * by `QuantizedLinear`, `applyLora` adapts them unchanged. References: the same network in
 * float32 with the dequantized weights (outputs, adapters), host quantizeData/dequantizeData
 * (merge's requantization), central finite differences (gradients into A and B).
 */
afterEach(() => vi.restoreAllMocks());

const CONFIG = {
  r: 2,
  loraAlpha: 4,
  targetModules: ['fc', 'c_attn', 'c_proj'],
  initLoraWeights: false,
  seed: 3,
};

/** A quantized TinyNet and the float32 TinyNet with its dequantized weights. */
async function pair(bits: 'nf4' | 'int8', seed = 1): Promise<[TinyNet, TinyNet]> {
  const q = new TinyNet(11, 6, 5, 3, seed);
  const f = new TinyNet(11, 6, 5, 3, seed);
  q.eval();
  f.eval();
  const report = await quantizeModel(q, { bits, blockSize: 4, skip: ['lm_head'] });
  expect(report.quantized).toEqual(['fc', 'c_attn', 'c_proj']);
  expect(report.skipped).toEqual(['lm_head']);
  for (const name of ['fc', 'c_attn', 'c_proj']) {
    const layer = q.getSubmodule(name);
    expect(layer).toBeInstanceOf(QuantizedLinear);
    const w = (layer as QuantizedLinear).dequantizedWeight();
    noGrad(() => f.getParameter(`${name}.weight`).copy_(w));
    w.dispose();
  }
  return [q, f];
}

describe('LoRA on a quantized base (CPU)', () => {
  it('forward equals the float32 net with the dequantized weights, and adapters are the same PEFT files', async () => {
    for (const bits of ['nf4', 'int8'] as const) {
      const [q, f] = await pair(bits);
      const ids = randint(0, 11, [2, 4], { generator: new Generator(5) });
      const lq = applyLora(q, CONFIG);
      const lf = applyLora(f, CONFIG);
      expect(q.getSubmodule('c_attn')).toBeInstanceOf(LoraLinear);
      const [yq, yf] = [q.forward(ids), f.forward(ids)];
      expect(await maxAbsDiff(yq, yf)).toBeLessThan(1e-5);
      expect(await maxAbs(yq)).toBeGreaterThan(0);
      expect(lq.trainableParameterNames()).toEqual(lf.trainableParameterNames());
      const [aq, af] = [await exportAdapter(lq), await exportAdapter(lf)];
      expect(aq.config).toEqual(af.config);
      expect(Object.keys(aq.tensors).sort()).toEqual(
        ['fc', 'c_attn', 'c_proj']
          .flatMap((m) => ['A', 'B'].map((x) => `base_model.model.${m}.lora_${x}.weight`))
          .sort(),
      );
      expect(aq.tensors).toEqual(af.tensors);
      dispose(ids, yq, yf);
      q.dispose();
      f.dispose();
    }
  });

  it('fused slices of c_attn (q and v only) over a quantized Conv1D equal the float32 net', async () => {
    const [q, f] = await pair('nf4', 5);
    const config = { ...CONFIG, targetModules: ['c_attn'], fusedSlices: { c_attn: [true, false, true] } };
    applyLora(q, config);
    applyLora(f, config);
    const ids = randint(0, 11, [2, 4], { generator: new Generator(3) });
    const [yq, yf] = [q.forward(ids), f.forward(ids)];
    expect(await maxAbsDiff(yq, yf)).toBeLessThan(1e-5);
    dispose(ids, yq, yf);
    q.dispose();
    f.dispose();
  });

  it('the quantized weight cannot train; only A and B (and what the config says) do', async () => {
    const [q, f] = await pair('nf4');
    const layer = q.getSubmodule('fc') as QuantizedLinear;
    expect(() => layer.weight.requiresGrad_()).toThrow(/cannot require gradients: it is a frozen base/);
    const lora = applyLora(q, CONFIG);
    expect(lora.trainableParameterNames().every((n) => /lora_[AB]/.test(n))).toBe(true);
    expect(() => (q.getSubmodule('fc') as LoraLinear).baseWeight).toThrow(
      /the base layer is quantized \(nf4\)/,
    );
    q.dispose();
    f.dispose();
  });

  it('gradients into A and B through the quantized base match central differences', async () => {
    const [q, f] = await pair('nf4', 2);
    f.dispose();
    const lora = applyLora(q, CONFIG);
    q.train();
    const ids = randint(0, 11, [2, 3], { generator: new Generator(9) });
    const loss = () => tidy(() => q.forward(ids).sin().sum());
    const l = loss();
    l.backward();
    l.dispose();
    const params = lora.trainableParameters();
    expect(params.length).toBe(6);
    let checked = 0;
    for (const p of params) {
      const analytic = (await p.grad!.data()) as Float32Array;
      const values = (await p.data()) as Float32Array;
      for (let i = 0; i < values.length; i += 3) {
        const eps = 1e-2;
        const at = async (v: number) => {
          const next = values.slice();
          next[i] = v;
          noGrad(() => tidy(() => void p.copy_(fromTypedArray(next, p.shape))));
          const t = loss();
          const out = (await t.item()) as number;
          t.dispose();
          return out;
        };
        const numeric = ((await at(values[i] + eps)) - (await at(values[i] - eps))) / (2 * eps);
        await at(values[i]);
        expect(Math.abs(numeric - analytic[i])).toBeLessThan(2e-3 + 1e-2 * Math.abs(analytic[i]));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(10);
    ids.dispose();
    q.dispose();
  });

  it('merge requantizes W + ΔW (warning once); mergeAndUnload({ dtype: "f32" }) keeps full precision', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const [q, f] = await pair('nf4', 4);
    f.dispose();
    const lora = applyLora(q, CONFIG);
    const ids = randint(0, 11, [2, 4], { generator: new Generator(6) });
    const unmerged = q.forward(ids);
    const fc = q.getSubmodule('fc') as LoraLinear;
    const base = fc.base_layer as QuantizedLinear;
    const w0 = (await base.dequantizedWeight().data()) as Float32Array;
    const dw = (await tidy(() => fc.deltaWeight('default')).data()) as Float32Array;
    lora.merge();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/merging into a quantized \(nf4\) base requantizes/);
    // reference: the host quantization of dequant(W) + ΔW with the same format and blocks
    const sum = Float32Array.from(w0, (v, i) => v + dw[i]);
    const want = dequantizeData(quantizeData(sum, 5, 6, { bits: 'nf4', blockSize: 4 }));
    const merged = (fc.base_layer as QuantizedLinear).dequantizedWeight();
    expect(Array.from((await merged.data()) as Float32Array)).toEqual(Array.from(want));
    const mergedOut = q.forward(ids);
    const drift = await maxAbsDiff(mergedOut, unmerged);
    expect(drift).toBeGreaterThan(1e-6); // rounding to the grid changes outputs
    expect(drift).toBeLessThan(0.5 * (await maxAbs(unmerged)));
    lora.unmerge();
    expect(warn).toHaveBeenCalledTimes(1); // once per process
    const plain = lora.mergeAndUnload({ dtype: 'f32' });
    expect(plain.getSubmodule('fc')).toBeInstanceOf(Linear);
    expect(plain.getSubmodule('c_attn')).toBeInstanceOf(Conv1D);
    expect(plain.modules().some((m) => m instanceof QuantizedLinear)).toBe(false);
    dispose(unmerged, merged, mergedOut, ids);
    q.dispose();
  });

  it('mergeAndUnload({ dtype: "f32" }) equals the unmerged LoRA forward to float rounding', async () => {
    const [q, f] = await pair('int8', 7);
    f.dispose();
    const lora = applyLora(q, CONFIG);
    const ids = randint(0, 11, [3, 2], { generator: new Generator(8) });
    const y = q.forward(ids);
    const plain = lora.mergeAndUnload({ dtype: 'f32' });
    const y2 = plain.forward(ids);
    expect(await maxAbsDiff(y2, y)).toBeLessThan(1e-5 * (1 + (await maxAbs(y))));
    dispose(y, y2, ids);
    plain.dispose();
  });
});

describe('QLoRA fine-tuning (CPU)', () => {
  it('an MLP with an NF4 base learns a low-rank change of its weights: the loss goes down', async () => {
    const g = new Generator(11);
    const teacher = new Sequential(
      new Linear(16, 32, { generator: g }),
      new GELU(),
      new Linear(32, 4, { generator: g }),
    );
    const student = new Sequential(
      new Linear(16, 32, { generator: g }),
      new GELU(),
      new Linear(32, 4, { generator: g }),
    );
    // the student starts from the teacher's weights; the target moves them by a rank-2 ΔW
    noGrad(() => {
      for (const [name, p] of teacher.namedParameters()) student.getParameter(name).copy_(p);
      const w = teacher.getParameter('0.weight');
      w.add_(
        tidy(() =>
          randn([32, 2], { generator: g })
            .matmul(randn([2, 16], { generator: g }))
            .mul(0.15),
        ),
      );
    });
    const x = randn([64, 16], { generator: g });
    const y = noGrad(() => teacher.forward(x));
    const report = await quantizeModel(student, { bits: 'nf4', blockSize: 16, doubleQuant: true });
    expect(report.quantized).toEqual(['0', '2']);
    const lora = applyLora(student, { r: 4, loraAlpha: 8, targetModules: ['0', '2'], seed: 1 });
    const opt = new optim.AdamW(lora.trainableParameters(), { lr: 1e-2 });
    const losses: number[] = [];
    for (let step = 0; step < 60; step++) {
      const loss = tidy(() => F.mseLoss(student.forward(x), y));
      loss.backward();
      opt.step();
      opt.zeroGrad();
      losses.push((await loss.item()) as number);
      loss.dispose();
    }
    expect(losses[59]).toBeLessThan(0.3 * losses[0]);
    dispose(x, y);
    student.dispose();
    teacher.dispose();
  });
});

describe('compiled QLoRA steps (CPU)', () => {
  it('lr.compile replays a step over a quantized base bit for bit like the eager step', async () => {
    const run = async (compiled: boolean): Promise<number[]> => {
      const g = new Generator(21);
      const model = new Sequential(
        new Linear(24, 40, { generator: g }),
        new GELU(),
        new Linear(40, 3, { generator: g }),
      );
      await quantizeModel(model, { bits: 'nf4', blockSize: 16, doubleQuant: true });
      const lora = applyLora(model, {
        r: 4,
        loraAlpha: 8,
        targetModules: ['0', '2'],
        initLoraWeights: false,
        seed: 2,
      });
      const opt = new optim.AdamW(lora.trainableParameters(), { lr: 1e-2 });
      const [x, y] = [randn([10, 24], { generator: g }), randn([10, 3], { generator: g })];
      const body = (x: Tensor, y: Tensor) => {
        opt.zeroGrad();
        const loss = F.mseLoss(model.forward(x), y);
        loss.backward();
        opt.step();
        return loss.detach();
      };
      const step = compiled ? compile(body) : (a: Tensor, b: Tensor) => tidy(() => body(a, b));
      const losses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const loss = step(x, y);
        losses.push((await loss.item()) as number);
        loss.dispose();
      }
      if (compiled) expect((step as ReturnType<typeof compile>).stats.replays).toBe(3);
      dispose(x, y);
      model.dispose();
      return losses;
    };
    const eager = await run(false);
    expect(await run(true)).toEqual(eager);
    expect(eager[4]).toBeLessThan(eager[0]);
  });
});

describe('model footprint', () => {
  it('reports the base by storage type next to float32: nf4 ≤ 0.16×, int8 ≤ 0.27×', async () => {
    for (const [bits, bound] of [
      ['nf4', 0.16],
      ['int8', 0.27],
    ] as const) {
      const model = new Sequential(new Linear(256, 256), new GELU(), new Conv1D(128, 256));
      const before = modelFootprint(model);
      expect(before.byType).toEqual({ float32: (256 * 256 + 256 + 256 * 128 + 128) * 4 });
      await quantizeModel(model, { bits });
      const fp = modelFootprint(model);
      expect(fp.f32Bytes).toBe(before.bytes);
      expect(fp.byType.float32).toBe((256 + 128) * 4); // the biases
      expect(fp.byType[bits]).toBe(fp.quantized.bytes);
      expect(fp.quantized.f32Bytes).toBe((256 * 256 + 256 * 128) * 4);
      expect(fp.quantized.bytes / fp.quantized.f32Bytes).toBeLessThanOrEqual(bound);
      model.dispose();
    }
  });
});
