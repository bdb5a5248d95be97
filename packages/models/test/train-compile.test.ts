import { applyLora } from '@lowrank/lora';
import { GPT2LMHeadModel, LMTrainer } from '@lowrank/models';
import { AdamW } from '@lowrank/nn';
import {
  compile,
  type Device,
  init,
  setDefaultDevice,
  type Tensor,
  tensor,
  webgpuStats,
} from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';

const webgpuUnavailable = await init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => setDefaultDevice('cpu'));

/**
 * The trainer's compiled steps (the default) against eager ones (`compile: false`): the same
 * losses bit for bit on the CPU over a run with dropout, evaluations between steps (eval/train
 * switches), a masked batch (another signature) and, for LoRA, a switch of adapters.
 */

const config = {
  vocab_size: 16,
  n_positions: 16,
  n_embd: 8,
  n_layer: 2,
  n_head: 2,
  resid_pdrop: 0.1,
  embd_pdrop: 0.1,
  attn_pdrop: 0,
};
const tokens = Int32Array.from({ length: 400 }, (_, i) => (i * 7 + (i >> 3)) % 16);
const mask = Uint8Array.from({ length: 400 }, (_, i) => (i % 3 === 0 ? 0 : 1));
const options = { steps: 12, batchSize: 2, blockSize: 8, lr: 0.05, seed: 1 };

async function run(
  compile: boolean,
  lora: boolean,
  device: Device = 'cpu',
  steps = options.steps,
): Promise<{ losses: number[]; t: LMTrainer }> {
  const model = await new GPT2LMHeadModel(config, { seed: 4 }).to(device);
  const handle = lora
    ? applyLora(model, { r: 2, loraAlpha: 4, targetModules: ['c_attn'], loraDropout: 0.1, seed: 1 })
    : null;
  handle?.addAdapter('second', { r: 2, loraAlpha: 4, targetModules: ['c_attn'], seed: 2 });
  const params = handle ? handle.trainableParameters() : model.parameters();
  const t = new LMTrainer(model, params, { ...options, compile });
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    if (i === 5) losses.push(await t.evaluate(tokens, 1));
    if (i === 8) handle?.setAdapter('second');
    losses.push(await t.trainStep(tokens, i === 7 ? mask : undefined));
  }
  return { losses, t };
}

describe('LMTrainer: compiled steps equal eager ones', () => {
  it('full fine-tuning of GPT-2 with dropout, an evaluation and a masked batch', async () => {
    const eager = await run(false, false);
    const compiled = await run(true, false);
    expect(compiled.losses).toEqual(eager.losses);
    expect(eager.t.compiledStep.stats.replays).toBe(0);
    // the evaluation's eval()/train() switches invalidate once; the masked batch is another signature
    const s = compiled.t.compiledStep.stats;
    expect(s.replays).toBeGreaterThanOrEqual(6);
    expect(s.invalidations).toBe(1);
  });

  it('LoRA with adapter dropout and a switch of adapters', async () => {
    const eager = await run(false, true);
    const compiled = await run(true, true);
    expect(compiled.losses).toEqual(eager.losses);
    const s = compiled.t.compiledStep.stats;
    expect(s.invalidations).toBe(2);
    expect(s.lastInvalidation).toMatch(/LoRA adapter state/);
  });
});

describe.skipIf(webgpuUnavailable !== null)('LMTrainer on WebGPU: compiled steps equal eager ones', () => {
  it('LoRA with adapter dropout, an evaluation and a switch of adapters (bit for bit)', async () => {
    const eager = await run(false, true, 'webgpu', 10);
    const compiled = await run(true, true, 'webgpu', 10);
    expect(compiled.losses).toEqual(eager.losses);
    expect(compiled.t.compiledStep.stats.invalidations).toBe(2);
  }, 300_000);

  it('a replayed GPT-2 LoRA step with dropout takes one pool buffer, its loss', async () => {
    // every intermediate, kernel scratch and gradient lives in the plan's slots (reserved by the
    // first replay); before the slots were bound a replay here took ~100 buffers from the pool
    const model = await new GPT2LMHeadModel({ ...config, vocab_size: 32 }, { seed: 4 }).to('webgpu');
    const handle = applyLora(model, {
      r: 2,
      loraAlpha: 4,
      targetModules: ['c_attn'],
      loraDropout: 0.1,
      seed: 1,
    });
    const opt = new AdamW(handle.trainableParameters(), { lr: 0.05 });
    const step = compile((x: Tensor) => {
      const loss = model.forward(x, { labels: x }).loss as Tensor;
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss;
    });
    const ids = tensor(
      Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 32),
      { shape: [2, 16], device: 'webgpu' },
    );
    const acquired: number[] = [];
    const losses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = webgpuStats()?.buffersAcquired ?? Number.NaN;
      const loss = step(ids);
      acquired.push((webgpuStats()?.buffersAcquired ?? Number.NaN) - before);
      losses.push(Number(await loss.toArray()));
      loss.dispose();
    }
    expect(step.stats).toMatchObject({ eager: 1, traces: 1, replays: 4 });
    const reserved = step.slotStats()?.reserved ?? 0;
    expect(reserved).toBeGreaterThan(10);
    // warm-up and trace run eagerly; the first replay reserves the slots
    expect(acquired.slice(2)).toEqual([1 + reserved, 1, 1, 1]);
    expect(step.slotStats()).toMatchObject({ unbound: 0, misses: 0 });
    expect(losses[5]).toBeLessThan(losses[0]);
  }, 300_000);
});
