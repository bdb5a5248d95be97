/**
 * What lazy fusion (issue 13) saves, counted: WebGPU dispatches per GPT-2 124M LoRA training step
 * with fusion on and off in the same process, and the CPU time spent recording one op.
 *
 *   XDG_RUNTIME_DIR=/tmp pnpm bench bench/dispatch-count.ts --vocab 40000   (GPT-2 124M, B=1, T=64)
 *   XDG_RUNTIME_DIR=/tmp pnpm bench bench/dispatch-count.ts --quick         (2 tiny layers: seconds)
 *   options: --layers 12 --embd 768 --heads 12 --vocab 50257 --batch 1 --seq 64 --dropout 0 --steps 1 --warmup 1
 *            --ops 2000 (calls per timed batch of the recording benchmark) --skip-train 1 --skip-ops 1
 *   on a GPU machine: bash .gpu/run.sh dispatch-count --batch 8 --seq 512
 *
 * lavapipe binds at most 128 MiB per buffer: GPT-2's tied 50257×768 embedding (154 MB) does not fit,
 * so on lavapipe pass a vocabulary below 43,690 (40,000 keeps the cross-entropy rows as long as
 * GPT-2's, ≥ 32,768 elements, which is what decides how they are reduced); a GPU takes the default.
 *
 * Part 1 builds the step as bench/train-gpt2.ts does (random init of the HF config, LoRA r=4 α=8 on
 * c_attn, dropout 0, AdamW, loss.backward(), opt.step(), opt.zeroGrad()) and reads `webgpuStats().dispatches`
 * around each phase; the count depends on the model and on B·T (long rows are reduced in two
 * passes), never on the GPU, so lavapipe gives the same numbers as an H100.
 *
 * Part 2 times `a.add(b)` on 8×8 float32 tensors on the CPU and WebGPU backends: "record" is the
 * call and the dispose of its result (fusion on: a lazy tensor, no kernel; off: the kernel runs on
 * the CPU, or its dispatch is recorded on WebGPU); "record + kernel" also computes the result
 * (`lr.realize`). Median µs per call over 15 rounds, no read-back in the timed region.
 * Prints `RESULT` lines and one JSON line at the end.
 */

import { applyLora } from '../packages/lora/src/index.js';
import { GPT2LMHeadModel } from '../packages/models/src/index.js';
import { AdamW } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const QUICK = process.argv.includes('--quick');
const L = numberArg('layers', QUICK ? 2 : 12);
const C = numberArg('embd', QUICK ? 64 : 768);
const H = numberArg('heads', QUICK ? 2 : 12);
const V = numberArg('vocab', QUICK ? 512 : 50257);
const B = numberArg('batch', 1);
const T = numberArg('seq', QUICK ? 32 : 64);
const DROPOUT = numberArg('dropout', 0);
const STEPS = numberArg('steps', 1);
const WARMUP = numberArg('warmup', 1);
const OPS = numberArg('ops', QUICK ? 500 : 2000);
const SKIP_TRAIN = arg('skip-train', '0') !== '0';
const SKIP_OPS = arg('skip-ops', '0') !== '0';

interface StepCount {
  fusion: boolean;
  forward: number;
  backward: number;
  optimizer: number;
  total: number;
  submits: number;
  recordMs: number;
}

const dispatches = (): number => lr.webgpuStats()?.dispatches ?? 0;
const submits = (): number => lr.webgpuStats()?.submits ?? 0;
const flush = async (): Promise<void> => {
  await lr.getBackend('webgpu').flush?.();
};

/** Dispatches of one LoRA training step per phase (after `WARMUP` steps in the same mode). */
async function countSteps(fusion: boolean): Promise<StepCount> {
  lr.setFusion(fusion);
  const model = new GPT2LMHeadModel(
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
  await model.to('webgpu');
  model.train();
  const ids = lr.randint(0, V, [B, T], { dtype: 'int32', device: 'webgpu', generator: new lr.Generator(1) });
  const lora = applyLora(model, { r: 4, loraAlpha: 8, targetModules: ['c_attn'] });
  const params = lora.trainableParameters();
  const opt = new AdamW(params, { lr: 1e-4 });
  const counts: StepCount[] = [];
  for (let i = 0; i < WARMUP + STEPS; i++) {
    await flush();
    const d0 = dispatches();
    const s0 = submits();
    const t0 = performance.now();
    const loss = lr.tidy(() => model.forward(ids, { labels: ids }).loss as lr.Tensor);
    const d1 = dispatches();
    loss.backward();
    const d2 = dispatches();
    opt.step();
    opt.zeroGrad();
    const d3 = dispatches();
    const recordMs = performance.now() - t0;
    const s3 = submits();
    const value = Number(await loss.item()); // the loss itself: one more kernel at most
    loss.dispose();
    await flush();
    const d4 = dispatches();
    if (!Number.isFinite(value)) throw new Error(`loss is ${value}`);
    if (i >= WARMUP)
      counts.push({
        fusion,
        forward: d1 - d0,
        backward: d2 - d1,
        optimizer: d3 - d2,
        total: d4 - d0,
        submits: s3 - s0,
        recordMs,
      });
    console.log(
      `  fusion ${fusion ? 'on ' : 'off'} step ${i}${i < WARMUP ? ' (warm-up)' : ''}: ${d4 - d0} dispatches (forward ${d1 - d0}, backward ${d2 - d1}, optimizer ${d3 - d2}, loss read ${d4 - d3}), loss ${value.toFixed(4)}, recorded in ${recordMs.toFixed(0)} ms`,
    );
  }
  opt.zeroGrad();
  for (const s of Object.values(opt.stateDict().state))
    for (const t of Object.values(s.tensors)) if (t instanceof lr.Tensor) t.dispose();
  for (const t of [...model.parameters(), ...model.buffers(), ...params]) if (!t.isDisposed) t.dispose();
  ids.dispose();
  await flush();
  lr.setFusion(true);
  const last = counts[counts.length - 1];
  if (!last) throw new Error('--steps must be at least 1');
  return last;
}

interface OpCost {
  device: lr.Device;
  fusion: boolean;
  recordUs: number;
  recordAndKernelUs: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

/**
 * Median µs per `a.add(b)` (8×8 float32) for every device × fusion × (record, record + kernel):
 * 17 rounds, each timing one batch of `OPS` calls per configuration in turn (so no configuration
 * gets the JIT's or the garbage collector's better moments), the first two rounds discarded.
 */
async function opCosts(): Promise<OpCost[]> {
  const devices = ['cpu', 'webgpu'] as const;
  const inputs = new Map(
    devices.map((d) => [d, [lr.randn([8, 8], { device: d }), lr.randn([8, 8], { device: d })]]),
  );
  const configs = devices.flatMap((device) =>
    [true, false].flatMap((fusion) =>
      [false, true].map((compute) => ({ device, fusion, compute, us: [] as number[] })),
    ),
  );
  for (let round = 0; round < 17; round++) {
    for (const cfg of configs) {
      const [a, b] = inputs.get(cfg.device)!;
      lr.setFusion(cfg.fusion);
      await lr.getBackend(cfg.device).flush?.();
      const t0 = performance.now();
      for (let i = 0; i < OPS; i++) {
        const c = a.add(b);
        if (cfg.compute) lr.realize(c.storage);
        c.dispose();
      }
      const us = ((performance.now() - t0) * 1000) / OPS;
      if (round >= 2) cfg.us.push(us);
    }
  }
  lr.setFusion(true);
  for (const [a, b] of inputs.values()) lr.dispose(a, b);
  await flush();
  return devices.flatMap((device) =>
    [true, false].map((fusion) => {
      const of = (compute: boolean) =>
        median(configs.find((c) => c.device === device && c.fusion === fusion && c.compute === compute)!.us);
      return { device, fusion, recordUs: of(false), recordAndKernelUs: of(true) };
    }),
  );
}

const r = await lr.init({ backend: 'webgpu' });
console.log(`# dispatch-count: ${r.description}; Node ${process.version}; ${new Date().toISOString()}`);
const out: { config: Record<string, number>; steps: StepCount[]; ops: OpCost[] } = {
  config: {
    dropout: DROPOUT,
    layers: L,
    embd: C,
    heads: H,
    vocab: V,
    batch: B,
    seq: T,
    maxFusedInputs: lr.getBackend('webgpu').maxFusedInputs,
  },
  steps: [],
  ops: [],
};

if (!SKIP_TRAIN) {
  console.log(
    `GPT-2 LoRA step: ${L} layers, n_embd ${C}, ${H} heads, vocab ${V}; batch ${B} × ${T}; LoRA r=4 α=8 on c_attn; AdamW`,
  );
  for (const fusion of [true, false]) out.steps.push(await countSteps(fusion));
  const [on, off] = out.steps;
  for (const s of out.steps)
    console.log(
      `RESULT dispatches_per_step fusion_${s.fusion ? 'on' : 'off'} ${s.total} forward ${s.forward} backward ${s.backward} optimizer ${s.optimizer} submits ${s.submits} record_ms ${s.recordMs.toFixed(0)}`,
    );
  console.log(
    `RESULT fusion_saves ${off.total - on.total} dispatches (${(off.total / on.total).toFixed(2)}× fewer)`,
  );
}

if (!SKIP_OPS) {
  out.ops = await opCosts();
  for (const o of out.ops)
    console.log(
      `RESULT add_8x8_us ${o.device} fusion_${o.fusion ? 'on' : 'off'} record ${o.recordUs.toFixed(2)} record_and_kernel ${o.recordAndKernelUs.toFixed(2)}`,
    );
}
console.log(JSON.stringify(out));
lr.destroyWebGPU();
process.exit(0);
