import { applyLora } from '@lowrank/lora';
import { evaluateLM, GPT2LMHeadModel, LMTrainer } from '@lowrank/models';
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
    // the evaluation's eval()/train() switches leave the training step's capture valid (the
    // modes it read are back when it replays); the masked batch is another signature
    const s = compiled.t.compiledStep.stats;
    expect(s.replays).toBeGreaterThanOrEqual(7);
    expect(s.invalidations).toBe(0);
  });

  it('LoRA with adapter dropout and a switch of adapters', async () => {
    const eager = await run(false, true);
    const compiled = await run(true, true);
    expect(compiled.losses).toEqual(eager.losses);
    const s = compiled.t.compiledStep.stats;
    expect(s.invalidations).toBe(1); // the switch of adapters (the evaluation does not invalidate)
    expect(s.lastInvalidation).toMatch(/LoRA adapter state/);
  });
});

describe('LMTrainer: gradient accumulation and the evaluation step', () => {
  const accumRun = async (compile: boolean, batchSize: number, gradAccumSteps: number) => {
    const model = await new GPT2LMHeadModel({ ...config, resid_pdrop: 0, embd_pdrop: 0 }, { seed: 4 });
    const handle = applyLora(model, { r: 2, loraAlpha: 4, targetModules: ['c_attn'], seed: 1 });
    const t = new LMTrainer(model, handle.trainableParameters(), {
      ...options,
      batchSize,
      gradAccumSteps,
      compile,
    });
    const losses: number[] = [];
    for (let i = 0; i < 6; i++) losses.push(await t.trainStep(tokens));
    const weights = await Promise.all(handle.trainableParameters().map((p) => p.toArray()));
    return { losses, weights: weights.flat(3) as number[], t };
  };

  it('2 micro-batches of 2 windows: compiled = eager bit for bit, and ≈ one batch of 4', async () => {
    const eager = await accumRun(false, 2, 2);
    const compiled = await accumRun(true, 2, 2);
    expect(compiled.losses).toEqual(eager.losses);
    expect(compiled.weights).toEqual(eager.weights);
    expect(compiled.t.compiledStep.stats.replays).toBe(4);
    // the same 4 windows a step (the sampler draws batchSize · gradAccumSteps) as one batch of 4:
    // the mean of two 2-window means is the 4-window mean (no mask: equal token counts)
    const whole = await accumRun(false, 4, 1);
    for (let i = 0; i < 6; i++) expect(compiled.losses[i]).toBeCloseTo(whole.losses[i], 5);
    for (let i = 0; i < whole.weights.length; i++)
      expect(compiled.weights[i]).toBeCloseTo(whole.weights[i], 5);
    expect(compiled.losses[5]).toBeLessThan(compiled.losses[0]);
    // the micro-batches' activations share slots: the planned peak is below one batch of 4's
    const wholePlan = (await accumRun(true, 4, 1)).t.compiledStep.memoryPlan();
    const accumPlan = compiled.t.compiledStep.memoryPlan();
    expect(accumPlan && wholePlan).toBeTruthy();
    if (accumPlan && wholePlan) expect(accumPlan.peakBytes).toBeLessThan(wholePlan.peakBytes);
  });

  it('a second adapter trained after its evaluation: the compiled evaluation sees its new weights', async () => {
    // the browser page's flow: adapter 1 trained and evaluated, adapter 2 added, evaluated, trained,
    // evaluated again; a trace right after the switch computed adapter 2's lazy B = 0 inside the
    // capture, and every replayed evaluation read zeros again (same loss before and after)
    const flow = async (compile: boolean) => {
      const model = await new GPT2LMHeadModel(config, { seed: 4 });
      let lora: ReturnType<typeof applyLora> | null = null;
      const out: number[] = [];
      for (const name of ['e2e', 'pasted']) {
        const cfg = { r: 2, loraAlpha: 4, targetModules: ['c_attn'], seed: 0 };
        if (lora) lora.addAdapter(name, cfg).setAdapter(name);
        else lora = applyLora(model, cfg, name);
        const m = name === 'e2e' ? mask : undefined;
        const ev = { batches: 2, batchSize: 2, blockSize: 8, seed: 7, mask: m, compile };
        out.push(await evaluateLM(model, tokens, ev));
        const t = new LMTrainer(model, lora.trainableParameters(), { ...options, steps: 3, compile });
        for (let i = 0; i < 3; i++) await t.trainStep(tokens, m);
        model.eval();
        out.push(await evaluateLM(model, tokens, ev));
      }
      return out;
    };
    const eager = await flow(false);
    expect(eager[3]).not.toBe(eager[2]);
    expect(await flow(true)).toEqual(eager);
  });

  it('refuses a gradAccumSteps that is not a positive integer', async () => {
    const model = await new GPT2LMHeadModel(config, { seed: 4 });
    expect(() => new LMTrainer(model, model.parameters(), { ...options, gradAccumSteps: 0 })).toThrow(
      /gradAccumSteps must be an integer ≥ 1, got 0/,
    );
  });

  it('evaluate runs a compiled step whose losses equal the eager evaluation', async () => {
    const make = async (compile: boolean) => {
      const model = await new GPT2LMHeadModel(config, { seed: 4 });
      return new LMTrainer(model, model.parameters(), { ...options, compile });
    };
    const eager = await make(false);
    const compiled = await make(true);
    const values: number[][] = [[], []];
    for (const [k, t] of [eager, compiled].entries()) {
      values[k].push(await t.evaluate(tokens, 3));
      await t.trainStep(tokens);
      values[k].push(await t.evaluate(tokens, 3, 99, mask));
    }
    expect(values[1]).toEqual(values[0]);
    expect(values[1][1]).not.toBe(values[1][0]);
    // 6 batches: a warm-up, a trace, replays; the masked batches are the same shapes
    expect(compiled.evalStep.stats).toMatchObject({ eager: 1, traces: 1, replays: 4 });
    expect(eager.evalStep.stats.replays).toBe(0);
  });
});

describe.skipIf(webgpuUnavailable !== null)('LMTrainer on WebGPU: compiled steps equal eager ones', () => {
  it('LoRA with adapter dropout, an evaluation and a switch of adapters (bit for bit)', async () => {
    const eager = await run(false, true, 'webgpu', 10);
    const compiled = await run(true, true, 'webgpu', 10);
    expect(compiled.losses).toEqual(eager.losses);
    expect(compiled.t.compiledStep.stats.invalidations).toBe(1);
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
