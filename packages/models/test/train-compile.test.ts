import { applyLora } from '@lowrank/lora';
import { GPT2LMHeadModel, LMTrainer } from '@lowrank/models';
import { type Device, init, setDefaultDevice } from '@lowrank/tensor';
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
});
