import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AdamW,
  checkpointFromBytes,
  checkpointToBytes,
  clipGradNorm,
  cosineSchedule,
  Dropout,
  F,
  GELU,
  LambdaLR,
  Linear,
  Sequential,
} from '@lowrank/nn';
import { loadCheckpoint, saveCheckpoint } from '@lowrank/nn/node';
import { type Device, Generator, memory, randint, type Tensor, tensor, tidy } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { webgpuUnavailable } from './helpers.js';

const unavailable = await webgpuUnavailable();

/** Three concentric rings in the plane: class = ring index (not linearly separable). */
function rings(n: number, device: Device): { x: Tensor; y: Tensor } {
  const g = new Generator(42);
  const xs = new Float32Array(2 * n);
  const ys = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const cls = i % 3;
    const r = 0.3 + 0.5 * cls + 0.2 * g.nextFloat();
    const a = 2 * Math.PI * g.nextFloat();
    xs[2 * i] = r * Math.cos(a);
    xs[2 * i + 1] = r * Math.sin(a);
    ys[i] = cls;
  }
  return { x: tensor(xs, { shape: [n, 2], device }), y: tensor(ys, { device }) };
}

function makeModel(seed: number, device: Device, dropout = 0): { model: Sequential; dropoutGen: Generator } {
  const g = new Generator(seed);
  const dropoutGen = new Generator(seed + 1);
  const model = new Sequential(
    new Linear(2, 32, { generator: g, device }),
    new GELU(),
    new Dropout(dropout, { generator: dropoutGen }),
    new Linear(32, 32, { generator: g, device }),
    new GELU(),
    new Linear(32, 3, { generator: g, device }),
  );
  return { model, dropoutGen };
}

async function train(device: Device, steps: number): Promise<{ losses: number[]; live: number[] }> {
  const { x, y } = rings(192, device);
  const { model } = makeModel(0, device);
  const opt = new AdamW(model.parameters(), { lr: 0.03, weightDecay: 0.01 });
  const sched = cosineSchedule(opt, { warmupSteps: 5, totalSteps: steps, minLrRatio: 0.1 });
  const losses: number[] = [];
  const live: number[] = [];
  for (let i = 0; i < steps; i++) {
    const loss = tidy(() => {
      const l = F.crossEntropy(model.forward(x), y);
      l.backward();
      return l;
    });
    clipGradNorm(model.parameters(), 1).dispose();
    opt.step();
    opt.zeroGrad();
    sched.step();
    if (i % 10 === 0 || i === steps - 1) losses.push(Number(await loss.item()));
    loss.dispose();
    if (i === 1 || i === steps - 1) live.push(memory().numTensors);
  }
  return { losses, live };
}

describe('training', () => {
  it('a small MLP learns the rings task on the cpu (loss 1.1 → < 0.01), without leaking', async () => {
    const { losses, live } = await train('cpu', 60);
    expect(losses[0]).toBeGreaterThan(1);
    expect(losses[losses.length - 1]).toBeLessThan(0.01);
    // the step loop holds no tensors beyond the model, the data and the optimizer state
    expect(live[1]).toBe(live[0]);
  });

  it.skipIf(unavailable !== null)(
    `a small MLP learns on webgpu too (reduced)${unavailable ? ` (skipped: WebGPU unavailable: ${unavailable})` : ''}`,
    async () => {
      const { losses, live } = await train('webgpu', 30);
      expect(losses[0]).toBeGreaterThan(1);
      expect(losses[losses.length - 1]).toBeLessThan(0.1);
      expect(live[1]).toBe(live[0]);
    },
  );
});

/** Everything a run needs, rebuilt from seeds; `resume` continues from a checkpoint. */
function makeRun(seed: number) {
  const { model, dropoutGen } = makeModel(seed, 'cpu', 0.2);
  const opt = new AdamW(
    [
      { params: model.parameters().filter((p) => p.rank === 2), weightDecay: 0.1 },
      { params: model.parameters().filter((p) => p.rank === 1), weightDecay: 0 },
    ],
    { lr: 0.02 },
  );
  const sched = new LambdaLR(opt, (s) => Math.min(1, (s + 1) / 4));
  const dataGen = new Generator(seed + 2);
  const { x, y } = rings(96, 'cpu');
  const trainStep = (): void => {
    tidy(() => {
      const idx = randint(0, 96, [16], { generator: dataGen });
      F.crossEntropy(model.forward(x.indexSelect(0, idx)), y.indexSelect(0, idx)).backward();
    });
    clipGradNorm(model.parameters(), 0.5).dispose();
    opt.step();
    opt.zeroGrad();
    sched.step();
  };
  const generators = { dropout: dropoutGen, data: dataGen };
  return { model, trainStep, state: { model, optimizer: opt, scheduler: sched, generators }, opt };
}

async function paramBits(run: ReturnType<typeof makeRun>): Promise<number[][]> {
  const out: number[][] = [];
  for (const p of run.model.parameters()) out.push(Array.from(new Uint32Array((await p.data()).buffer)));
  return out;
}

describe('training checkpoints', () => {
  it('model + optimizer + schedule + generator states + step resume bit-identically (bytes and file)', async () => {
    const straight = makeRun(5);
    for (let i = 0; i < 8; i++) straight.trainStep();
    const expected = await paramBits(straight);

    const first = makeRun(5);
    for (let i = 0; i < 4; i++) first.trainStep();
    const bytes = await checkpointToBytes({ ...first.state, step: 4, extra: { note: 'x' } });

    // a different seed everywhere: everything must come from the checkpoint
    const resumed = makeRun(99);
    const restored = checkpointFromBytes(bytes, resumed.state);
    expect(restored).toEqual({ step: 4, extra: { note: 'x' } });
    expect(resumed.opt.getLr()).toEqual(first.opt.getLr());
    for (let i = 4; i < 8; i++) resumed.trainStep();
    expect(await paramBits(resumed)).toEqual(expected);

    // the same through the atomic file helpers
    const path = join(mkdtempSync(join(tmpdir(), 'nn-ckpt-')), 'run.safetensors');
    await saveCheckpoint(path, { ...first.state, step: 4 });
    const fromFile = makeRun(123);
    const r = await loadCheckpoint(path, fromFile.state);
    expect(r.step).toBe(4);
    for (let i = 4; i < 8; i++) fromFile.trainStep();
    expect(await paramBits(fromFile)).toEqual(expected);

    // without the restore, the runs differ (the test can fail)
    const fresh = makeRun(99);
    for (let i = 4; i < 8; i++) fresh.trainStep();
    expect(await paramBits(fresh)).not.toEqual(expected);
  });

  it('a checkpoint without what the target asks for is refused', async () => {
    const run = makeRun(1);
    const bytes = await checkpointToBytes({ model: run.model });
    expect(() => checkpointFromBytes(bytes, { model: run.model, optimizer: run.opt })).toThrow(
      /no optimizer state/,
    );
    expect(() => checkpointFromBytes(bytes, { model: run.model, generators: run.state.generators })).toThrow(
      /no state for generator 'dropout'/,
    );
  });
});
