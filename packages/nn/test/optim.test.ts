import {
  Adam,
  AdamW,
  clipGradNorm,
  constantSchedule,
  cosineSchedule,
  LambdaLR,
  Linear,
  linearSchedule,
  type Optimizer,
  type optim,
  SGD,
  warmupCosineLambda,
} from '@lowrank/nn';
import { type Device, memory, ones, type Tensor, tensor, tidy, zeros } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { expectClose, type JsonObject, list, num, obj, REF, ref, webgpuUnavailable } from './helpers.js';

const OPT = obj(REF.optim);
const unavailable = await webgpuUnavailable();

type AnyOptimizer = Optimizer<optim.BaseOptions>;

function makeOptimizer(kase: JsonObject, w: Tensor, b: Tensor): AnyOptimizer {
  const options = obj(kase.options) as Record<string, number | boolean | number[]>;
  const groups = kase.groups ? list(kase.groups).map((g, i) => ({ ...obj(g), params: [[w], [b]][i] })) : null;
  const params = groups ?? [w, b];
  switch (kase.kind) {
    case 'SGD':
      return new SGD(params as Tensor[], options as { lr: number });
    case 'Adam':
      return new Adam(params as Tensor[], options as Partial<optim.AdamOptions>);
    case 'AdamW':
      return new AdamW(params as Tensor[], options as Partial<optim.AdamOptions>);
    default:
      throw new Error(`unknown optimizer ${String(kase.kind)}`);
  }
}

function optimSuite(device: Device, full: boolean): void {
  const cases = list(OPT.cases).map(obj);
  for (const kase of full
    ? cases
    : cases.filter((c) => ['sgd_nesterov_wd', 'adamw_cosine'].includes(String(c.name)))) {
    it(`${String(kase.name)} follows torch's trajectory`, async () => {
      const w = ref(OPT.w0, { device, requiresGrad: true });
      const b = ref(OPT.b0, { device, requiresGrad: true });
      const opt = makeOptimizer(kase, w, b);
      const sched = kase.schedule ? cosineSchedule(opt, { warmupSteps: 2, totalSteps: 6 }) : null;
      const grads = list(OPT.grads).map(obj);
      const steps = list(kase.steps).map(obj);
      for (let i = 0; i < grads.length; i++) {
        w.grad = ref(grads[i].w, { device });
        b.grad = ref(grads[i].b, { device });
        opt.step();
        sched?.step();
        await expectClose(w, steps[i].w, { rtol: 1e-5, atol: 1e-6 });
        await expectClose(b, steps[i].b, { rtol: 1e-5, atol: 1e-6 });
        const lrs = list(list(kase.lrs)[i]).map(num);
        for (const [j, lr] of opt.getLr().entries()) expect(lr).toBeCloseTo(lrs[j], 12);
        opt.zeroGrad();
        expect(w.grad).toBeNull();
      }
      opt.dispose();
    });
  }

  it('clipGradNorm matches torch (2-norm, no-op, inf-norm, 3-norm)', async () => {
    const c = obj(REF.clip_grad_norm);
    for (const k of list(c.cases).map(obj)) {
      const w = zeros([3, 4], { device, requiresGrad: true });
      const b = zeros([4], { device, requiresGrad: true });
      w.grad = ref(c.gw, { device });
      b.grad = ref(c.gb, { device });
      const normType = k.norm_type === 'inf' ? Number.POSITIVE_INFINITY : num(k.norm_type);
      const total = clipGradNorm([w, b], num(k.max_norm), { normType });
      expect(await total.item()).toBeCloseTo(num(k.total), 4);
      await expectClose(w.grad, k.gw, { rtol: 1e-5, atol: 1e-6 });
      await expectClose(b.grad, k.gb, { rtol: 1e-5, atol: 1e-6 });
    }
  });
}

describe('optimizers against PyTorch on cpu', () => {
  optimSuite('cpu', true);

  it('schedules: linear/cosine warmup-decay and constant match torch LambdaLR', () => {
    for (const s of list(REF.schedules).map(obj)) {
      const p = zeros([1], { requiresGrad: true });
      const opt = new SGD([p], { lr: 0.1 });
      const o = {
        warmupSteps: num(s.warmupSteps),
        totalSteps: s.totalSteps === undefined ? 1 : num(s.totalSteps),
        minLrRatio: s.minLrRatio === undefined ? 0 : num(s.minLrRatio),
      };
      const sched =
        s.kind === 'linear'
          ? linearSchedule(opt, o)
          : s.kind === 'cosine'
            ? cosineSchedule(opt, o)
            : constantSchedule(opt, o);
      const lrs = [sched.getLastLr()[0]];
      for (let i = 0; i < 12; i++) {
        opt.step();
        sched.step();
        lrs.push(sched.getLastLr()[0]);
      }
      for (const [i, v] of list(s.lrs).entries()) expect(lrs[i]).toBeCloseTo(num(v), 12);
    }
  });

  it('LambdaLR: one lambda per group, state dict round trip, argument checks', () => {
    const a = zeros([1], { requiresGrad: true });
    const b = zeros([1], { requiresGrad: true });
    const opt = new AdamW([{ params: [a], lr: 1 }, { params: [b] }], { lr: 0.5 });
    const sched = new LambdaLR(opt, [(s) => 1 / (s + 1), (s) => s]);
    expect(sched.getLastLr()).toEqual([1, 0]);
    sched.step();
    sched.step();
    expect(sched.getLastLr()).toEqual([1 / 3, 1]);
    const again = new LambdaLR(opt, [(s) => 1 / (s + 1), (s) => s]);
    again.loadStateDict(sched.stateDict());
    expect(again.getLastLr()).toEqual([1 / 3, 1]);
    expect(() => new LambdaLR(opt, [(s) => s])).toThrow(/expected 2 lambdas/);
    expect(() => warmupCosineLambda({ warmupSteps: 5, totalSteps: 3 })).toThrow(/warmupSteps ≤ totalSteps/);
  });

  it('state exists only for trained parameters: frozen ones cost nothing (stateBytes)', () => {
    const frozen = new Linear(64, 64);
    frozen.requiresGrad_(false);
    const adapter = new Linear(64, 4);
    const opt = new AdamW([...frozen.parameters(), ...adapter.parameters()], { lr: 1e-3 });
    expect(opt.stateBytes()).toBe(0);
    const x = ones([2, 64]);
    tidy(() => adapter.forward(frozen.forward(x)).sum().backward());
    expect(frozen.weight.grad).toBeNull();
    opt.step();
    // two moments per trained element, 4 bytes each
    expect(opt.stateBytes()).toBe(2 * 4 * adapter.numParameters());
    expect(opt.getState(frozen.weight)).toBeUndefined();
    expect(opt.getState(adapter.weight)?.step).toBe(1);
    const momentum = new SGD(adapter.parameters(), { lr: 0.1, momentum: 0.9 });
    momentum.step();
    expect(momentum.stateBytes()).toBe(4 * adapter.numParameters());
    expect(new SGD(adapter.parameters(), { lr: 0.1 }).stateBytes()).toBe(0);
  });

  it('optimizer stateDict/loadStateDict resumes identically', async () => {
    const run = (opt: AnyOptimizer, p: Tensor, steps: number): void => {
      for (let i = 0; i < steps; i++) {
        p.grad = tensor([0.1 * i, -0.2, 0.3 + i]);
        opt.step();
        opt.zeroGrad();
      }
    };
    const p1 = tensor([1, 2, 3], { requiresGrad: true });
    const o1 = new Adam([p1], { lr: 0.1, amsgrad: true });
    run(o1, p1, 3);
    const p2 = tensor(await p1.data(), { requiresGrad: true });
    const o2 = new Adam([p2], { lr: 0.5 });
    o2.loadStateDict(o1.stateDict());
    expect(o2.paramGroups[0].lr).toBe(0.1);
    expect(o2.paramGroups[0].amsgrad).toBe(true);
    run(o1, p1, 2);
    run(o2, p2, 2);
    expect(Array.from(await p2.data())).toEqual(Array.from(await p1.data()));
    expect(() => new Adam([p1, p2]).loadStateDict(o1.stateDict())).toThrow(/group 0 has 2 parameters/);
  });

  it('validates options and parameter lists', () => {
    const p = zeros([2], { requiresGrad: true });
    expect(() => new SGD([p], { lr: -1 })).toThrow(/SGD: invalid learning rate/);
    expect(() => new SGD([p], { lr: 0.1, nesterov: true })).toThrow(/Nesterov momentum requires/);
    expect(() => new Adam([p], { betas: [1, 0.9] })).toThrow(/Adam: invalid betas/);
    expect(() => new AdamW([])).toThrow(/empty parameter list/);
    expect(() => new AdamW([{ params: [p] }, { params: [p] }])).toThrow(/more than one group/);
  });

  it('an optimizer loop inside tidy leaks no tensors', () => {
    const m = new Linear(4, 3);
    const opt = new AdamW(m.parameters(), { lr: 1e-2 });
    const x = ones([5, 4]);
    const step = (): void => {
      tidy(() => m.forward(x).square().mean().backward());
      clipGradNorm(m.parameters(), 1).dispose();
      opt.step();
      opt.zeroGrad();
    };
    step();
    const before = memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    expect(memory().numTensors).toBe(before);
  });
});

if (unavailable) {
  describe('optimizers on webgpu', () => {
    it.skip(`skipped: WebGPU unavailable (${unavailable})`, () => {});
  });
} else {
  describe('optimizers against PyTorch on webgpu', () => optimSuite('webgpu', false));
}
