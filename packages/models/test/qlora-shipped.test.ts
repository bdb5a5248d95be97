import { readFileSync } from 'node:fs';
import { noGrad } from '@lowrank/autograd';
import { applyLora } from '@lowrank/lora';
import { QuantizedLinear } from '@lowrank/nn';
import { type Device, fromTypedArray, init, setDefaultDevice } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { e2eStream, parseE2E } from '../src/data.js';
import { fromPretrained, loadTokenizer } from '../src/node.js';
import { LMTrainer } from '../src/train.js';

const webgpuUnavailable = await init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => setDefaultDevice('cpu'));

/**
 * QLoRA on the shipped model (issue 18): the char GPT-2 of examples/checkpoints/shakespeare-char
 * loaded with an NF4 base (`fromPretrained(dir, { quantize: { bits: 'nf4' } })`: its 16 Conv1D
 * weights in blocks of 64, the tied head float32), LoRA on c_attn, fine-tuned on E2E
 * (data/e2e/valid.txt, loss on the references only) on the CPU and on WebGPU, in LMTrainer's
 * steps of 2 windows of 32 tokens. The held-out loss (every reference token of 20 held-out
 * examples) goes down, lands within 2% of the same run on the float32 base, and both devices
 * take the same steps.
 */
const shipped = new URL('../../../examples/checkpoints/shakespeare-char', import.meta.url).pathname;
const examples = parseE2E(
  readFileSync(new URL('../../../data/e2e/valid.txt', import.meta.url), 'utf8')
    .split('\n')
    .slice(0, 200)
    .join('\n'),
);
const STEPS = 12;
const BLOCK = 32;

/**
 * The mean loss over every reference token of the held-out stream, cut into consecutive windows
 * of BLOCK tokens, in one forward. Not `trainer.evaluate`: its random windows can hold no
 * reference token at this block size, and such a batch's loss is NaN (0/0).
 */
async function heldOutLoss(
  model: Awaited<ReturnType<typeof fromPretrained>>,
  val: { tokens: Int32Array; targetMask: Uint8Array },
): Promise<number> {
  const n = Math.floor(val.tokens.length / BLOCK) * BLOCK;
  const labels = Int32Array.from(val.tokens.subarray(0, n), (v, i) => (val.targetMask[i] ? v : -100));
  const opts = { dtype: 'int32', device: model.device } as const;
  const ids = fromTypedArray(val.tokens.subarray(0, n), [n / BLOCK, BLOCK], opts);
  const lab = fromTypedArray(labels, [n / BLOCK, BLOCK], opts);
  model.eval();
  const loss = noGrad(() => model.forward(ids, { labels: lab }).loss!);
  const v = (await loss.item()) as number;
  model.train();
  for (const t of [loss, ids, lab]) t.dispose();
  return v;
}

async function qloraRun(
  device: Device,
  bits: 'nf4' | null = 'nf4',
): Promise<{ before: number; after: number; losses: number[] }> {
  const model = await fromPretrained(shipped, { device, quantize: bits ? { bits } : undefined });
  const quantized = model.modules().filter((m) => m instanceof QuantizedLinear);
  expect(quantized).toHaveLength(bits ? 16 : 0); // c_attn, attn.c_proj, c_fc, mlp.c_proj of 4 blocks
  if (bits) expect((quantized[0] as QuantizedLinear).device).toBe(device);
  const tok = loadTokenizer(shipped, model.config.vocab_size);
  const encode = (s: string) => tok.encode(s);
  const train = e2eStream(examples.slice(0, 180), encode);
  const val = e2eStream(examples.slice(180), encode);
  const lora = applyLora(model, { r: 4, loraAlpha: 8, targetModules: ['c_attn'], seed: 1 });
  const trainer = new LMTrainer(model, lora.trainableParameters(), {
    steps: STEPS,
    batchSize: 2,
    blockSize: BLOCK,
    lr: 5e-3,
    warmupSteps: 0,
    seed: 0,
  });
  const before = await heldOutLoss(model, val);
  const losses: number[] = [];
  for (let i = 0; i < STEPS; i++) losses.push(await trainer.trainStep(train.tokens, train.targetMask));
  const after = await heldOutLoss(model, val);
  model.dispose();
  return { before, after, losses };
}

describe('QLoRA on the shipped char GPT-2 (NF4 base, LoRA on c_attn, E2E)', () => {
  it('CPU: the held-out loss goes down, within 2% of the float32-base run', async () => {
    const [nf4, f32] = [await qloraRun('cpu'), await qloraRun('cpu', null)];
    // measured: NF4 2.609 → 2.487 in 12 steps; float32 base 2.614 → 2.484 (NF4 0.11% above)
    expect(nf4.after).toBeLessThan(nf4.before - 0.08);
    expect(Math.abs(nf4.after - f32.after)).toBeLessThan(0.02 * f32.after);
  }, 60_000);

  it.skipIf(webgpuUnavailable !== null)(
    `WebGPU: the held-out loss goes down, step by step as on the CPU${webgpuUnavailable ? ` (skipped: ${webgpuUnavailable})` : ''}`,
    async () => {
      const [cpu, gpu] = [await qloraRun('cpu'), await qloraRun('webgpu')];
      // measured on lavapipe: 2.609 → 2.487, each step's loss within 3.0e-7 of the CPU's (relative)
      expect(gpu.after).toBeLessThan(gpu.before - 0.08);
      for (let i = 0; i < STEPS; i++)
        expect(Math.abs(gpu.losses[i] - cpu.losses[i])).toBeLessThan(1e-5 * cpu.losses[i]);
      expect(Math.abs(gpu.after - cpu.after)).toBeLessThan(1e-5 * cpu.after);
    },
    120_000,
  );
});
