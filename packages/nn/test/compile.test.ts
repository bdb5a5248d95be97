import { AdamW, cosineSchedule, Dropout, F, GELU, type LambdaLR, Linear, Sequential, SGD } from '@lowrank/nn';
import {
  adamUpdate_,
  backendAllocationCount,
  CaptureError,
  compile,
  type Device,
  Generator,
  manualSeed,
  memory,
  type Tensor,
  tensor,
  webgpuStats,
  zeros,
} from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { webgpuUnavailable } from './helpers.js';

/**
 * `lr.compile` against eager execution: N replayed training steps must give the same losses and
 * parameters as N eager steps of an identical model (bit for bit on the CPU, where the same
 * kernels run in the same order), across mode switches, parameter reassignment, schedulers,
 * dropout and gradient accumulation; what a replay cannot see must invalidate or be refused.
 */

const unavailable = await webgpuUnavailable();

interface Run {
  model: Sequential;
  opt: AdamW | SGD;
  drop: Generator;
}

function makeRun(device: Device, options: { dropout?: number; sgd?: boolean } = {}): Run {
  manualSeed(7);
  const drop = new Generator(11);
  const model = new Sequential(
    new Linear(3, 8, { device }),
    new GELU(),
    new Dropout(options.dropout ?? 0, { generator: drop }),
    new Linear(8, 2, { device }),
  );
  const opt = options.sgd
    ? new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 })
    : new AdamW(model.parameters(), { lr: 0.05, weightDecay: 0.01 });
  return { model, opt, drop };
}

function batch(i: number, device: Device): { x: Tensor; y: Tensor } {
  const g = new Generator(100 + (i % 2)); // two batches in turn: a replay must read its inputs
  const xs = new Float32Array(12);
  g.fillNormal(xs);
  return { x: tensor(xs, { shape: [4, 3], device }), y: tensor(new Int32Array([0, 1, 1, 0]), { device }) };
}

function stepOf(run: Run) {
  return (x: Tensor, y: Tensor): Tensor => {
    run.opt.zeroGrad();
    const loss = F.crossEntropy(run.model.forward(x), y);
    loss.backward();
    run.opt.step();
    return loss.detach();
  };
}

async function params(run: Run): Promise<number[]> {
  const out: number[] = [];
  for (const p of run.model.parameters()) out.push(...(await p.data()));
  return out;
}

/** Runs `steps` steps on both, calling `between(i)` on each run before step i; returns the losses. */
async function compare(
  device: Device,
  steps: number,
  options: { dropout?: number; sgd?: boolean } = {},
  between: (i: number, run: Run) => void = () => {},
): Promise<{
  eager: number[];
  replayed: number[];
  compiledRun: Run;
  stats: ReturnType<typeof compile>['stats'];
}> {
  const eagerRun = makeRun(device, options);
  const eagerStep = stepOf(eagerRun);
  const compiledRun = makeRun(device, options);
  const compiled = compile(stepOf(compiledRun));
  const eager: number[] = [];
  const replayed: number[] = [];
  for (let i = 0; i < steps; i++) {
    between(i, eagerRun);
    between(i, compiledRun);
    const { x, y } = batch(i, device);
    const a = eagerStep(x, y);
    const b = compiled(x, y);
    eager.push(Number(await a.item()));
    replayed.push(Number(await b.item()));
    for (const t of [a, b, x, y]) t.dispose();
  }
  expect(await params(compiledRun)).toEqual(await params(eagerRun));
  return { eager, replayed, compiledRun, stats: compiled.stats };
}

describe('compile: replayed training steps equal eager ones (CPU, bit for bit)', () => {
  it('AdamW on an MLP: losses and parameters after 6 steps', async () => {
    const { eager, replayed, stats } = await compare('cpu', 6);
    expect(replayed).toEqual(eager);
    expect(eager[5]).toBeLessThan(eager[0]); // it trains
    expect(stats).toMatchObject({ eager: 1, traces: 1, replays: 4, invalidations: 0 });
  });

  it('dropout draws fresh masks at every replay', async () => {
    const { eager, replayed, stats } = await compare('cpu', 5, { dropout: 0.4 });
    expect(replayed).toEqual(eager);
    expect(stats.replays).toBe(3);
  });

  it('a scheduled Adam learning rate is a per-call input: no retrace', async () => {
    const schedulers = new Map<Run, LambdaLR>();
    const { eager, replayed, stats } = await compare('cpu', 6, {}, (i, run) => {
      let s = schedulers.get(run);
      if (!s) {
        s = cosineSchedule(run.opt, { warmupSteps: 1, totalSteps: 6 });
        schedulers.set(run, s);
      }
      if (i > 0) s.step();
    });
    expect(replayed).toEqual(eager);
    expect(stats.invalidations).toBe(0);
    expect(stats.replays).toBe(4);
  });

  it('SGD with a changing learning rate retraces (its guard fails) and stays equal', async () => {
    const { eager, replayed, stats } = await compare('cpu', 5, { sgd: true }, (i, run) => {
      if (i === 3) run.opt.paramGroups[0].lr = 0.02;
    });
    expect(replayed).toEqual(eager);
    expect(stats.invalidations).toBe(1);
    expect(stats.lastInvalidation).toMatch(/SGD options/);
  });

  it('train()/eval() switches invalidate the capture', async () => {
    const { eager, replayed, stats } = await compare('cpu', 6, { dropout: 0.3 }, (i, run) => {
      if (i === 3) run.model.eval();
      if (i === 5) run.model.train();
    });
    expect(replayed).toEqual(eager);
    expect(stats.invalidations).toBe(2);
  });

  it('reassigning a parameter invalidates the capture', async () => {
    const { eager, replayed, stats } = await compare('cpu', 5, {}, (i, run) => {
      if (i !== 3) return;
      const head = run.model.at(3) as Linear;
      const w = tensor(new Float32Array(16).fill(0.1), { shape: [2, 8] });
      head.registerParameter('weight', w);
      run.opt.addParamGroup({ params: [w] });
    });
    expect(replayed).toEqual(eager);
    expect(stats.invalidations).toBe(1);
  });

  it('gradient accumulation over micro-batches inside the step', async () => {
    const make = () => {
      const run = makeRun('cpu');
      return {
        run,
        step: (x: Tensor, y: Tensor) => {
          run.opt.zeroGrad();
          let total: Tensor | null = null;
          for (const [a, b] of [
            [0, 2],
            [2, 4],
          ]) {
            const loss = F.crossEntropy(run.model.forward(x.slice(0, a, b)), y.slice(0, a, b)).div(2);
            loss.backward();
            const d = loss.detach();
            total = total ? total.add(d) : d;
          }
          run.opt.step();
          return total as Tensor;
        },
      };
    };
    const e = make();
    const c = make();
    const compiled = compile(c.step);
    for (let i = 0; i < 5; i++) {
      const { x, y } = batch(i, 'cpu');
      expect(await compiled(x, y).item()).toBe(await e.step(x, y).item());
    }
    expect(await params(c.run)).toEqual(await params(e.run));
    expect(compiled.stats.replays).toBe(3);
  });

  it('an evaluation step under noGrad, next to the training step', async () => {
    const run = makeRun('cpu');
    const evalStep = compile((x: Tensor, y: Tensor) => F.crossEntropy(run.model.forward(x), y));
    const { x, y } = batch(0, 'cpu');
    const expected = await F.crossEntropy(run.model.forward(x), y).item();
    for (let i = 0; i < 4; i++) expect(await evalStep(x, y).item()).toBe(expected);
    expect(evalStep.stats.replays).toBe(2);
  });

  it('replays allocate what the plan says and leak nothing', async () => {
    const run = makeRun('cpu');
    const compiled = compile(stepOf(run));
    const { x, y } = batch(0, 'cpu');
    for (let i = 0; i < 3; i++) compiled(x, y).dispose();
    const before = memory();
    for (let i = 0; i < 5; i++) {
      const made = backendAllocationCount();
      compiled(x, y).dispose();
      // only the loss takes new memory: intermediates sit in the plan's slots, gradients in place
      expect(backendAllocationCount() - made).toBe(1);
    }
    expect(memory().numTensors).toBe(before.numTensors);
    expect(memory().numBytes).toBe(before.numBytes);
    expect(compiled.slotStats()).toMatchObject({ unbound: 0, misses: 0 });
    const plan = compiled.memoryPlan();
    expect(plan).not.toBeNull();
    if (!plan) return;
    expect(plan.intermediates).toBeGreaterThan(5);
    expect(plan.arenaBytes).toBeLessThan(plan.unplannedBytes); // slots are shared
    // 26 parameters + 52 Adam moments + the batch (48 + 16 bytes), all float32
    const paramBytes = 4 * (3 * 8 + 8 + 8 * 2 + 2);
    expect(plan.externalBytes).toBe(3 * paramBytes + 48 + 16);
    expect(plan.stateBytes).toBe(paramBytes); // the gradients the step leaves behind
    expect(plan.peakBytes).toBeGreaterThan(plan.externalBytes);
  });
});

describe('compile: what a replay cannot do is refused', () => {
  it('reading a value inside the step', () => {
    const run = makeRun('cpu');
    const step = compile((x: Tensor) => {
      const y = run.model.forward(x);
      y.sum()
        .item()
        .catch(() => {}); // the read itself is refused too
      return y;
    });
    const { x } = batch(0, 'cpu');
    step(x); // warm-up: eager, allowed
    expect(() => step(x)).toThrow(CaptureError);
    expect(() => step(x)).toThrow(/read tensor values/);
  });

  it('drawing host random numbers directly inside the step', () => {
    const g = new Generator(0);
    const step = compile((x: Tensor) => x.mul(g.nextFloat()));
    const x = tensor([1, 2]);
    step(x);
    expect(() => step(x)).toThrow(/random numbers/);
  });

  it('non-tensor arguments and results', () => {
    const step = compile((x: Tensor) => x.mul(2));
    expect(() => (step as unknown as (n: number) => Tensor)(3)).toThrow(/argument 0 is number, not a tensor/);
    const bad = compile(() => 3 as unknown as Tensor, { warmup: 0 });
    expect(() => bad()).toThrow(/returned number/);
  });

  it('a strided Adam step with per-call options (baked into its ops) is refused', () => {
    const p = tensor(new Float32Array(6).fill(1), { shape: [2, 3] }).transpose(0, 1); // [3, 2], strided
    const [g, m, v] = [
      tensor(new Float32Array(6).fill(0.5), { shape: [3, 2] }),
      zeros([3, 2]),
      zeros([3, 2]),
    ];
    let count = 0;
    const step = compile(() => {
      count++;
      adamUpdate_(p, g, m, v, () => ({
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        decoupled: false,
        step: count,
      }));
    });
    step(); // the warm-up runs eagerly
    expect(() => step()).toThrow(/strided or aliased Adam step inside lr\.compile/);
  });

  it('a disposed tensor the step reads invalidates the capture', async () => {
    // (a closure variable reassigned while the old tensor lives on would not be seen: the module
    // docs of compile say to keep such tensors in modules or pass them as arguments)
    let w = tensor([1, 2]);
    const step = compile((x: Tensor) => x.mul(w));
    const x = tensor([3, 4]);
    step(x).dispose();
    step(x).dispose();
    expect(await step(x).toArray()).toEqual([3, 8]);
    w.dispose();
    w = tensor([5, 6]);
    expect(await step(x).toArray()).toEqual([15, 24]);
    expect(step.stats.lastInvalidation).toMatch(/disposed/);
  });
});

describe.skipIf(unavailable !== null)('compile on WebGPU', () => {
  it('train()/eval() switches and a reassigned parameter invalidate; replays equal eager steps', async () => {
    const { eager, replayed, stats } = await compare('webgpu', 6, { dropout: 0.3 }, (i, run) => {
      if (i === 2) run.model.eval();
      if (i === 4) {
        run.model.train();
        const head = run.model.at(3) as Linear;
        const w = tensor(new Float32Array(16).fill(0.1), { shape: [2, 8], device: 'webgpu' });
        head.registerParameter('weight', w);
        run.opt.addParamGroup({ params: [w] });
      }
    });
    expect(replayed).toEqual(eager);
    expect(stats.invalidations).toBe(2);
  });

  it('a replay takes no buffer from the pool but its output: the plan is bound', async () => {
    const run = makeRun('webgpu');
    const compiled = compile(stepOf(run));
    const { x, y } = batch(0, 'webgpu');
    for (let i = 0; i < 2; i++) compiled(x, y).dispose();
    for (let i = 0; i < 3; i++) {
      const acquired = webgpuStats()?.buffersAcquired ?? -1;
      const loss = compiled(x, y);
      // the loss; the first replay also reserves the plan's slots (kernels' scratch included)
      const reserved = i === 0 ? (compiled.slotStats()?.reserved ?? 0) : 0;
      expect((webgpuStats()?.buffersAcquired ?? -1) - acquired).toBe(1 + reserved);
      loss.dispose();
    }
    expect(compiled.slotStats()).toMatchObject({ unbound: 0, misses: 0 });
    expect(compiled.slotStats()?.reserved).toBeGreaterThan(3);
  });

  it('AdamW with dropout: 5 replayed steps equal eager ones within 1e-6', async () => {
    const eagerRun = makeRun('webgpu', { dropout: 0.2 });
    const compiledRun = makeRun('webgpu', { dropout: 0.2 });
    const eagerStep = stepOf(eagerRun);
    const compiled = compile(stepOf(compiledRun));
    for (let i = 0; i < 5; i++) {
      const { x, y } = batch(i, 'webgpu');
      const a = Number(await eagerStep(x, y).item());
      const b = Number(await compiled(x, y).item());
      expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-6);
    }
    const pe = await params(eagerRun);
    const pc = await params(compiledRun);
    for (let i = 0; i < pe.length; i++) expect(Math.abs(pe[i] - pc[i])).toBeLessThanOrEqual(1e-6);
    expect(compiled.stats.replays).toBe(3);
  });
});

describe('adamUpdate_ with an options function', () => {
  it('still validates the step it reads', () => {
    const p = tensor([1]);
    const read = () => ({
      lr: 0.1,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      decoupled: false,
      step: 0,
    });
    expect(() => adamUpdate_(p, tensor([1]), tensor([0]), tensor([0]), read)).toThrow(/step ≥ 1/);
  });
});
