/**
 * QLoRA on GPT-2 (issue #18): the same LoRA training step over a float32, an NF4 and an int8
 * frozen base. GPT-2 124M (random init, HF config), batch 8 × 512, AdamW, LoRA r = 4 α = 8 on
 * c_attn by default. Per base format: tokens/s, the base's bytes by storage type next to float32
 * (`modelFootprint`), the peak of `lr.peakMemory()` during the timed steps, and the first/last
 * loss (the three runs start from the same weights and data; the quantized ones differ by the
 * rounding of the base), and a quality proxy before training: the mean per-token KL divergence
 * of the quantized model's next-token distribution from the float32 model's, and the relative
 * RMS error of its logits (on random tokens; with `--dir`, a Hugging Face GPT-2 checkpoint
 * instead of the random init).
 *
 *   XDG_RUNTIME_DIR=/tmp node --conditions=source --import tsx bench/qlora-gpt2.ts --layers 1 --batch 1 --seq 16 --embd 64 --heads 2 --vocab 512 --device cpu
 *   options: --bits f32,nf4,int8  --block 64  --dq 0|1  --targets c_attn[,c_proj,c_fc]
 *            --layers 12 --batch 8 --seq 512 --embd 768 --heads 12 --vocab 50257
 *            --steps 10 --warmup 3 --device webgpu|cpu --compile 0|1  --dir checkpoints/gpt2  --dropout 0
 */

import { noGrad } from '../packages/autograd/src/index.js';
import { applyLora } from '../packages/lora/src/index.js';
import { GPT2LMHeadModel } from '../packages/models/src/index.js';
import { fromPretrained } from '../packages/models/src/node.js';
import { AdamW, Conv1D, modelFootprint, quantizeModel } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const device = arg('device', 'webgpu') as lr.Device;
const BITS = arg('bits', 'f32,nf4,int8').split(',') as ('f32' | lr.QuantFormat)[];
const BLOCK = numberArg('block', 64);
const DQ = numberArg('dq', 0) !== 0;
const TARGETS = arg('targets', 'c_attn').split(',');
const L = numberArg('layers', 12);
const B = numberArg('batch', 8);
const T = numberArg('seq', 512);
const C = numberArg('embd', 768);
const H = numberArg('heads', 12);
const V = numberArg('vocab', 50257);
const STEPS = numberArg('steps', 10);
const WARMUP = numberArg('warmup', 3);
const COMPILE = numberArg('compile', 0) !== 0;
const MiB = 1024 * 1024;
const DIR = arg('dir', '');
// dropout is drawn on the host: at GPT-2 124M × 8×512 its masks cost ~4 s a step, hiding the kernels
const DROPOUT = numberArg('dropout', 0);

if (device === 'webgpu') await lr.init({ backend: 'webgpu' });

async function run(bits: 'f32' | lr.QuantFormat): Promise<Record<string, string | number>> {
  const model = DIR
    ? await fromPretrained(DIR)
    : new GPT2LMHeadModel(
        {
          vocab_size: V,
          n_positions: Math.max(1024, T),
          n_embd: C,
          n_layer: L,
          n_head: H,
          resid_pdrop: DROPOUT,
          embd_pdrop: DROPOUT,
          attn_pdrop: DROPOUT,
        },
        { seed: 0 },
      );
  const vocab = model.config.vocab_size;
  // quality proxy: next-token distributions of the float32 model, then of the quantized one
  const evalIds = lr.randint(0, vocab, [1, Math.min(T, 128)], {
    dtype: 'int32',
    generator: new lr.Generator(7),
  });
  model.eval();
  const logits = (): lr.Tensor => noGrad(() => lr.tidy(() => model.forward(evalIds).logits as lr.Tensor));
  const ref = logits();
  const q0 = performance.now();
  // quantized on the CPU (the weights are host memory there), then moved: the device never holds the float32 base
  if (bits !== 'f32')
    await quantizeModel(model, { bits, blockSize: BLOCK, doubleQuant: DQ, skip: ['lm_head'] });
  const quantizeMs = performance.now() - q0;
  const got = logits();
  const [kl, relRms] = await Promise.all(
    lr
      .tidy(() => {
        const [lp, lq] = [ref.logSoftmax(-1), got.logSoftmax(-1)];
        const klMean = lp.exp().mul(lp.sub(lq)).sum(-1).mean();
        const rel = got.sub(ref).square().mean().sqrt().div(ref.square().mean().sqrt());
        return [klMean, rel];
      })
      .map(async (t) => Number(await t.item())),
  );
  lr.dispose(ref, got, evalIds);
  await model.to(device);
  model.train();
  const fp = modelFootprint(model);
  // the base layers' float32 weights (what the quantized ones replace), for the f32 row
  const f32Base = model
    .modules()
    .filter((m) => m instanceof Conv1D)
    .reduce((n, m) => n + (m as Conv1D).weight.size * 4, 0);
  const ids = lr.randint(0, vocab, [B, T], { dtype: 'int32', device, generator: new lr.Generator(1) });
  const lora = applyLora(model, { r: 4, loraAlpha: 8, targetModules: TARGETS, seed: 0 });
  const opt = new AdamW(lora.trainableParameters(), { lr: 1e-4 });
  const body = (x: lr.Tensor): lr.Tensor => {
    const loss = model.forward(x, { labels: x }).loss as lr.Tensor;
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss.detach();
  };
  const compiled = lr.compile(body);
  const step = (): lr.Tensor => (COMPILE ? compiled(ids) : lr.tidy(() => body(ids)));
  let first = Number.NaN;
  for (let i = 0; i < WARMUP; i++) {
    const loss = step();
    if (i === 0) first = Number(await loss.item());
    loss.dispose();
  }
  await lr.getBackend(device).flush?.();
  lr.resetPeakMemory();
  lr.webgpuProfiler()?.resetPeakBytes();
  const t0 = performance.now();
  let last: lr.Tensor | null = null;
  for (let i = 0; i < STEPS; i++) {
    last?.dispose();
    last = step();
  }
  const lastLoss = last ? Number(await last.item()) : Number.NaN;
  last?.dispose();
  const ms = (performance.now() - t0) / STEPS;
  const peak = lr.peakMemory();
  const gpu = lr.webgpuStats();
  // everything the run made goes, so the next format's peak does not include this run's
  // memory plan and optimizer state (the H200 run of 2026-12-03 kept them: its peaks rose
  // f32 → f16 → nf4 → int8 by ~0.5 GiB a run, in run order)
  compiled.dispose();
  opt.dispose();
  ids.dispose();
  model.dispose();
  await lr.getBackend(device).flush?.();
  return {
    bits,
    'tok/s': Math.round((B * T) / (ms / 1000)),
    'ms/step': ms.toFixed(1),
    'base MiB': ((bits === 'f32' ? f32Base : fp.quantized.bytes) / MiB).toFixed(2),
    'quantized/f32': fp.quantized.f32Bytes ? (fp.quantized.bytes / fp.quantized.f32Bytes).toFixed(3) : '-',
    'model MiB': (fp.bytes / MiB).toFixed(1),
    'model/f32': (fp.bytes / fp.f32Bytes).toFixed(3),
    'peak MiB': (peak / MiB).toFixed(1),
    'gpu peak MiB': gpu ? (gpu.peakBytesInUse / MiB).toFixed(1) : '-',
    'live after MiB': (lr.memory().numBytes / MiB).toFixed(1),
    'quantize s': (quantizeMs / 1000).toFixed(1),
    'KL vs f32': kl.toExponential(2),
    'logit rel RMS': relRms.toExponential(2),
    'loss first': first.toFixed(4),
    'loss last': lastLoss.toFixed(4),
  };
}

console.log(
  `QLoRA GPT-2 on ${lr.getBackend(device).description}: L=${L} C=${C} H=${H} V=${V}, batch ${B}×${T}, LoRA r=4 on ${TARGETS.join(',')}, block ${BLOCK}${DQ ? ', double quant' : ''}${COMPILE ? ', compiled' : ''}`,
);
const rows: Record<string, string | number>[] = [];
for (const bits of BITS) rows.push(await run(bits));
console.table(rows);
if (device === 'webgpu') lr.destroyWebGPU();
