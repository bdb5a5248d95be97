/**
 * GPT-2 training throughput on lowrank's WebGPU backend (issue 9): GPT-2 124M (random init, HF
 * config), batch 8 × 512, AdamW, LoRA r=4 α=8 on c_attn ("lora") and full fine-tuning ("full").
 * Prints tokens/s, the step-time breakdown (forward / backward / optimizer: GPU timestamps with
 * 'timestamp-query', else flush + read-back per phase), dispatches and submits per step, peak GPU
 * bytes from the backend's own accounting, and (LoRA) the merged-LoRA inference latency against
 * the base model's. `bench/train_gpt2_torch.py` runs the same settings on PyTorch.
 *
 *   XDG_RUNTIME_DIR=/tmp node --conditions=source --import tsx bench/train-gpt2.ts --layers 1 --batch 1 --seq 16 --embd 64 --heads 2 --vocab 512
 *   bash .gpu/run.sh train-gpt2 --mode lora            (the H100; see docs/perf.md)
 *   options: --mode lora|full|both  --layers 12 --batch 8 --seq 512 --embd 768 --heads 12 --vocab 50257
 *            --steps 10 --warmup 3 --dropout 0 --infer 1 --device webgpu|cpu
 *            --compile 0|1 (1: the step is an lr.compile'd function: warm-up, trace, then replays;
 *            the GPU time is then measured for the whole step, the CPU time is the replay call)
 */

import { applyLora } from '../packages/lora/src/index.js';
import { GPT2LMHeadModel } from '../packages/models/src/index.js';
import { AdamW } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const mode = arg('mode', 'both');
const device = arg('device', 'webgpu') as lr.Device;
const L = numberArg('layers', 12);
const B = numberArg('batch', 8);
const T = numberArg('seq', 512);
const C = numberArg('embd', 768);
const H = numberArg('heads', 12);
const V = numberArg('vocab', 50257);
const STEPS = numberArg('steps', 10);
const WARMUP = numberArg('warmup', 3);
const DROPOUT = numberArg('dropout', 0);
const INFER = numberArg('infer', 1) !== 0;
const KPROF = numberArg('kprof', 0);
const COMPILE = numberArg('compile', 0) !== 0;

const gpu = device === 'webgpu';
const MiB = 1024 * 1024;

async function sync(): Promise<void> {
  await lr.getBackend(device).flush?.();
}

function stats(): { dispatches: number; submits: number; created: number; acquired: number } {
  const s = lr.webgpuStats();
  return {
    dispatches: s?.dispatches ?? 0,
    submits: s?.submits ?? 0,
    created: s?.buffersCreated ?? 0,
    acquired: s?.buffersAcquired ?? 0,
  };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const f1 = (x: number): string => x.toFixed(1);
const f2 = (x: number): string => x.toFixed(2);

function newModel(): GPT2LMHeadModel {
  return new GPT2LMHeadModel(
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
}

interface PhaseTimes {
  fwd: number;
  bwd: number;
  opt: number;
}

async function trainBench(kind: 'lora' | 'full'): Promise<void> {
  const model = newModel();
  await model.to(device);
  model.train();
  const g = new lr.Generator(1);
  const ids = lr.randint(0, V, [B, T], { dtype: 'int32', device, generator: g });

  let inferBase = Number.NaN;
  if (kind === 'lora' && INFER) inferBase = await inferMs(model, ids);

  const handle = kind === 'lora' ? applyLora(model, { r: 4, loraAlpha: 8, targetModules: ['c_attn'] }) : null;
  const params = handle ? handle.trainableParameters() : model.parameters().filter((p) => p.requiresGrad);
  const nParams = params.reduce((a, p) => a + p.size, 0);
  const opt = new AdamW(params, { lr: 1e-4 });
  const prof = gpu ? lr.webgpuProfiler() : null;
  const useTs = prof !== null && prof.timestamp() >= 0;
  if (prof) await prof.readTimestamps();

  const cpu: PhaseTimes[] = [];
  const compiled = lr.compile((x: lr.Tensor) => {
    const loss = model.forward(x, { labels: x }).loss as lr.Tensor;
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss.detach();
  });
  const eagerStep = (mark: boolean): lr.Tensor => {
    const c0 = performance.now();
    if (mark) prof?.timestamp();
    const loss = lr.tidy(() => model.forward(ids, { labels: ids }).loss as lr.Tensor);
    const c1 = performance.now();
    if (mark) prof?.timestamp();
    loss.backward();
    const c2 = performance.now();
    if (mark) prof?.timestamp();
    opt.step();
    opt.zeroGrad();
    if (mark) prof?.timestamp();
    const c3 = performance.now();
    cpu.push({ fwd: c1 - c0, bwd: c2 - c1, opt: c3 - c2 });
    return loss;
  };
  // compiled: one timestamp pair around the whole step (a replay records no op code to mark)
  const compiledStep = (mark: boolean): lr.Tensor => {
    const c0 = performance.now();
    if (mark) prof?.timestamp();
    const loss = compiled(ids);
    if (mark) prof?.timestamp();
    cpu.push({ fwd: performance.now() - c0, bwd: 0, opt: 0 });
    return loss;
  };
  const step = COMPILE ? compiledStep : eagerStep;

  // warm-up: compiles pipelines, fills the buffer pool, creates the optimizer state
  let firstLoss = Number.NaN;
  for (let i = 0; i < WARMUP; i++) {
    const loss = step(false);
    if (i === 0) firstLoss = Number(await loss.item());
    loss.dispose();
    await sync();
  }
  prof?.resetPeakBytes();
  const s0 = stats();
  cpu.length = 0;
  const t0 = performance.now();
  let last: lr.Tensor | null = null;
  for (let i = 0; i < STEPS; i++) {
    last?.dispose();
    last = step(useTs);
  }
  const lastLoss = last ? Number(await last.item()) : Number.NaN;
  last?.dispose();
  const wall = (performance.now() - t0) / STEPS;
  const s1 = stats();
  const wgpu = lr.webgpuStats();
  const cpuMean: PhaseTimes = {
    fwd: mean(cpu.map((c) => c.fwd)),
    bwd: mean(cpu.map((c) => c.bwd)),
    opt: mean(cpu.map((c) => c.opt)),
  };

  // GPU-side breakdown
  let gpuPhases: PhaseTimes | null = null;
  let how = 'flush + read-back per phase (3 extra steps)';
  if (useTs && prof && COMPILE) {
    const ts = await prof.readTimestamps();
    const ph: PhaseTimes[] = [];
    for (let i = 0; i + 1 < ts.length; i += 2) ph.push({ fwd: (ts[i + 1] - ts[i]) / 1e6, bwd: 0, opt: 0 });
    const tail = ph.slice(Math.min(2, ph.length - 1));
    gpuPhases = { fwd: mean(tail.map((p) => p.fwd)), bwd: 0, opt: 0 };
    how = 'compiled: GPU timestamps around each whole step (forward = the step), steps back to back';
  } else if (useTs && prof) {
    const ts = await prof.readTimestamps();
    const ph: PhaseTimes[] = [];
    for (let i = 0; i + 3 < ts.length; i += 4) {
      ph.push({
        fwd: (ts[i + 1] - ts[i]) / 1e6,
        bwd: (ts[i + 2] - ts[i + 1]) / 1e6,
        opt: (ts[i + 3] - ts[i + 2]) / 1e6,
      });
    }
    const tail = ph.slice(Math.min(2, ph.length - 1)); // the first steps' marks include queueing behind nothing
    gpuPhases = {
      fwd: mean(tail.map((p) => p.fwd)),
      bwd: mean(tail.map((p) => p.bwd)),
      opt: mean(tail.map((p) => p.opt)),
    };
    how = 'GPU timestamps between phases (timestamp-query), steps back to back';
  } else {
    const ph: PhaseTimes[] = [];
    for (let i = 0; i < 3; i++) {
      const a = performance.now();
      const loss = lr.tidy(() => model.forward(ids, { labels: ids }).loss as lr.Tensor);
      await sync();
      const b = performance.now();
      loss.backward();
      await sync();
      const c = performance.now();
      opt.step();
      opt.zeroGrad();
      await sync();
      const d = performance.now();
      loss.dispose();
      ph.push({ fwd: b - a, bwd: c - b, opt: d - c });
    }
    gpuPhases = {
      fwd: mean(ph.map((p) => p.fwd)),
      bwd: mean(ph.map((p) => p.bwd)),
      opt: mean(ph.map((p) => p.opt)),
    };
  }

  // per-kernel GPU time of one step (each dispatch in its own timestamped pass)
  if (KPROF > 0 && prof) {
    prof.profileKernels(true);
    step(false).dispose();
    const kp = await prof.readKernelProfile();
    prof.profileKernels(false);
    const rows = [...kp.entries()].sort((a, b) => b[1].ns - a[1].ns);
    const total = rows.reduce((a, [, v]) => a + v.ns, 0);
    console.log(
      `kernel profile of one step: ${rows.reduce((a, [, v]) => a + v.count, 0)} dispatches, ${f1(total / 1e6)} ms of GPU time in kernels`,
    );
    for (const [k, v] of rows.slice(0, KPROF))
      console.log(
        `  ${f2(v.ns / 1e6).padStart(9)} ms ${f1((100 * v.ns) / total).padStart(5)}%  ×${String(v.count).padEnd(5)} ${k.slice(0, 110)}`,
      );
  }

  const tokS = (B * T) / (wall / 1000);
  console.log(
    `\n## ${kind} (${kind === 'lora' ? 'LoRA r=4 α=8 on c_attn' : 'full fine-tuning'}), ${nParams} trained parameters`,
  );
  console.log(`RESULT ${kind} tokens_per_s ${tokS.toFixed(0)}`);
  console.log(`RESULT ${kind} step_ms ${f2(wall)}`);
  console.log(`loss: first ${firstLoss.toFixed(4)}, last ${lastLoss.toFixed(4)}`);
  console.log(
    `breakdown (${how}): forward ${f2(gpuPhases.fwd)} ms, backward ${f2(gpuPhases.bwd)} ms, optimizer ${f2(gpuPhases.opt)} ms`,
  );
  console.log(
    `RESULT ${kind} fwd_ms ${f2(gpuPhases.fwd)} bwd_ms ${f2(gpuPhases.bwd)} opt_ms ${f2(gpuPhases.opt)}`,
  );
  console.log(
    `CPU time recording the phases: forward ${f2(cpuMean.fwd)} ms, backward ${f2(cpuMean.bwd)} ms, optimizer ${f2(cpuMean.opt)} ms`,
  );
  if (COMPILE) {
    const gpuStep = gpuPhases.fwd + gpuPhases.bwd + gpuPhases.opt;
    const cpuStep = cpuMean.fwd + cpuMean.bwd + cpuMean.opt;
    console.log(
      `RESULT ${kind} compiled cpu_step_ms ${f2(cpuStep)} gpu_step_ms ${f2(gpuStep)} cpu/gpu ${(cpuStep / gpuStep).toFixed(3)} (${JSON.stringify(compiled.stats)})`,
    );
    const plan = compiled.memoryPlan();
    if (plan)
      console.log(
        `RESULT ${kind} plan peak_MiB ${f1(plan.peakBytes / MiB)} arena_MiB ${f1(plan.arenaBytes / MiB)} unplanned_MiB ${f1(plan.unplannedBytes / MiB)} slots ${plan.slots.length} calls ${plan.calls}`,
      );
    const bound = compiled.slotStats();
    if (bound)
      console.log(
        `RESULT ${kind} slots reserved ${bound.reserved} reserved_MiB ${f1(bound.reservedBytes / MiB)} unbound ${bound.unbound} misses ${bound.misses}`,
      );
  }
  console.log(
    `RESULT ${kind} dispatches_per_step ${f1((s1.dispatches - s0.dispatches) / STEPS)} submits_per_step ${f1((s1.submits - s0.submits) / STEPS)} buffers_created_per_step ${f1((s1.created - s0.created) / STEPS)} buffers_acquired_per_step ${f1((s1.acquired - s0.acquired) / STEPS)}`,
  );
  if (wgpu)
    console.log(
      `RESULT ${kind} peak_in_use_MiB ${f1(wgpu.peakBytesInUse / MiB)} peak_reserved_MiB ${f1(wgpu.peakBytesReserved / MiB)}`,
    );
  console.log(`live tensors ${lr.memory().numTensors}, live bytes ${f1(lr.memory().numBytes / MiB)} MiB`);

  compiled.dispose();
  if (handle && INFER) {
    const unmerged = await inferMs(model, ids);
    handle.merge();
    const merged = await inferMs(model, ids);
    console.log(
      `RESULT inference_ms base ${f2(inferBase)} lora_unmerged ${f2(unmerged)} lora_merged ${f2(merged)} merged/base ${(merged / inferBase).toFixed(3)}`,
    );
  }
  opt.zeroGrad();
  for (const s of Object.values(opt.stateDict().state))
    for (const t of Object.values(s.tensors)) if (t instanceof lr.Tensor) t.dispose();
  ids.dispose();
  for (const t of [...model.parameters(), ...model.buffers()]) t.dispose();
  if (handle) for (const p of params) p.dispose();
  await sync();
}

/** Median ms of a no-grad forward to logits (eval mode), each synced. */
async function inferMs(model: GPT2LMHeadModel, ids: lr.Tensor): Promise<number> {
  model.eval();
  const times: number[] = [];
  for (let i = 0; i < 2 + Math.max(3, STEPS); i++) {
    const t0 = performance.now();
    const logits = lr.withoutRecording(() => lr.tidy(() => model.forward(ids).logits));
    await sync();
    const dt = performance.now() - t0;
    logits.dispose();
    if (i >= 2) times.push(dt);
  }
  model.train();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function main(): Promise<void> {
  const r = await lr.init({ backend: device === 'webgpu' ? 'webgpu' : 'cpu' });
  console.log(`# train-gpt2: ${r.description}`);
  console.log(
    `config: ${L} layers, ${H} heads, n_embd ${C}, vocab ${V}; batch ${B} × ${T} tokens; dropout ${DROPOUT}; AdamW lr 1e-4 wd 0.01; ${STEPS} timed steps after ${WARMUP} warm-up`,
  );
  const kinds: ('lora' | 'full')[] = mode === 'both' ? ['lora', 'full'] : [mode as 'lora' | 'full'];
  for (const k of kinds) await trainBench(k);
  if (gpu) lr.destroyWebGPU();
}

await main();
