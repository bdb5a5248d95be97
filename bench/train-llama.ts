/**
 * Llama LoRA training throughput and memory (issues 17 and 18): a SmolLM2-135M-shaped model (its
 * published config: hidden 576, 30 layers, 9 heads, 3 kv heads, intermediate 1536, vocab 49152,
 * tied embeddings, rope_theta 100000; random init, seed 0), batch 8 × 512, LoRA r = 8 α = 16 on
 * q_proj and v_proj, AdamW (lr 1e-4, wd 0.01), each step an `lr.compile`d function (LMTrainer's
 * default). The frozen base in float32, or stored as f16 / bf16 / nf4 / int8 (`quantizeModel` on
 * the CPU before the move, so the device never holds the float32 base; the tied embedding table
 * stays float32). Prints tokens/s, the base's bytes, the peak memory (the WebGPU pool's bytes in
 * use and reserved, and `lr.peakMemory()`), optionally a per-kernel GPU profile of one step,
 * and greedy decode tokens/s with the KV cache at batch 1 (`generate`). One base format per
 * process, so a run's peak holds nothing of another's. `bench/train_llama_torch.py` runs the
 * same settings on PyTorch + PEFT.
 *
 *   XDG_RUNTIME_DIR=/tmp node --conditions=source --import tsx bench/train-llama.ts --layers 1 --hidden 64 --heads 4 --kv 2 --inter 128 --vocab 512 --batch 1 --seq 16 --decode 8 --prompt 4
 *   bash .gpu/run.sh train-llama --bits f32 --kprof 15        (the H200: bench/h200-llama.sh)
 *   options: --bits f32|f16|bf16|nf4|int8  --block 64  --dq 0|1
 *            --layers 30 --hidden 576 --heads 9 --kv 3 --inter 1536 --vocab 49152 --batch 8 --seq 512
 *            --steps 10 --warmup 3 --compile 0|1 --kprof N (top N kernels of one step; 0: none)
 *            --decode N (new tokens; 0: no decode run) --prompt 32 --train 0|1 --device webgpu|cpu
 */

import { applyLora } from '../packages/lora/src/index.js';
import { generate, LlamaForCausalLM } from '../packages/models/src/index.js';
import { AdamW, Linear, modelFootprint, quantizeModel } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const device = arg('device', 'webgpu') as lr.Device;
const BITS = arg('bits', 'f32') as 'f32' | lr.QuantFormat;
const BLOCK = numberArg('block', 64);
const DQ = numberArg('dq', 0) !== 0;
const L = numberArg('layers', 30);
const C = numberArg('hidden', 576);
const H = numberArg('heads', 9);
const KV = numberArg('kv', 3);
const FF = numberArg('inter', 1536);
const V = numberArg('vocab', 49152);
const B = numberArg('batch', 8);
const T = numberArg('seq', 512);
const STEPS = numberArg('steps', 10);
const WARMUP = numberArg('warmup', 3);
const COMPILE = numberArg('compile', 1) !== 0;
const KPROF = numberArg('kprof', 0);
const DECODE = numberArg('decode', 0);
const PROMPT = numberArg('prompt', 32);
const TRAIN = numberArg('train', 1) !== 0;
const MiB = 1024 * 1024;
const f1 = (x: number): string => x.toFixed(1);
const f2 = (x: number): string => x.toFixed(2);

async function sync(): Promise<void> {
  await lr.getBackend(device).flush?.();
}

function newModel(): LlamaForCausalLM {
  return new LlamaForCausalLM(
    {
      model_type: 'llama',
      vocab_size: V,
      hidden_size: C,
      intermediate_size: FF,
      num_hidden_layers: L,
      num_attention_heads: H,
      num_key_value_heads: KV,
      tie_word_embeddings: true,
      rope_theta: 100000,
      max_position_embeddings: 8192,
      rms_norm_eps: 1e-5,
      bos_token_id: 0,
      eos_token_id: 0,
    },
    { seed: 0 },
  );
}

/** Greedy generation at batch 1: ms for 1 new token (prefill) and for DECODE; the decode rate from their difference. */
async function decodeBench(model: LlamaForCausalLM): Promise<void> {
  const g = new lr.Generator(2);
  const prompt = Array.from({ length: PROMPT }, () => Math.floor(g.nextFloat() * V));
  const gen = async (n: number): Promise<number> => {
    await sync();
    const t0 = performance.now();
    const r = await generate(model, prompt, { maxNewTokens: n, greedy: true, eosTokenId: null });
    if (r.tokens.length !== n) throw new Error(`decode: ${r.tokens.length} tokens, expected ${n}`);
    return performance.now() - t0;
  };
  await gen(4); // warm-up: pipelines for the prefill and the one-token step
  const t1 = Math.min(await gen(1), await gen(1), await gen(1));
  const tn = Math.min(await gen(DECODE), await gen(DECODE));
  console.log(`RESULT decode prefill_ms ${f2(t1)} total_ms ${f1(tn)} new_tokens ${DECODE}`);
  console.log(
    `RESULT decode tokens_per_s ${f1((DECODE - 1) / ((tn - t1) / 1000))} end_to_end_tokens_per_s ${f1(DECODE / (tn / 1000))}`,
  );
}

async function trainBench(model: LlamaForCausalLM): Promise<void> {
  const kind = `lora-${BITS}`;
  const fp = modelFootprint(model);
  // the Linear layers' float32 weights (what a stored base replaces), for the f32 row
  const f32Base = model
    .modules()
    .filter((m) => m instanceof Linear)
    .reduce((n, m) => n + (m as Linear).weight.size * 4, 0);
  const lora = applyLora(model, { r: 8, loraAlpha: 16, targetModules: ['q_proj', 'v_proj'], seed: 0 });
  const params = lora.trainableParameters();
  const nParams = params.reduce((a, p) => a + p.size, 0);
  const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.01 });
  const ids = lr.randint(0, V, [B, T], { dtype: 'int32', device, generator: new lr.Generator(1) });
  model.train();
  const body = (x: lr.Tensor): lr.Tensor => {
    const loss = model.forward(x, { labels: x }).loss as lr.Tensor;
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss.detach();
  };
  const compiled = lr.compile(body, { enabled: COMPILE });
  const prof = lr.webgpuProfiler();
  let first = Number.NaN;
  for (let i = 0; i < WARMUP; i++) {
    const loss = compiled(ids);
    if (i === 0) first = Number(await loss.item());
    loss.dispose();
    await sync();
  }
  lr.resetPeakMemory();
  prof?.resetPeakBytes();
  const useTs = prof !== null && prof.timestamp() >= 0;
  if (prof) await prof.readTimestamps();
  const cpuMs: number[] = [];
  const t0 = performance.now();
  let last: lr.Tensor | null = null;
  for (let i = 0; i < STEPS; i++) {
    last?.dispose();
    const c0 = performance.now();
    if (useTs) prof?.timestamp();
    last = compiled(ids);
    if (useTs) prof?.timestamp();
    cpuMs.push(performance.now() - c0);
  }
  const lastLoss = last ? Number(await last.item()) : Number.NaN;
  last?.dispose();
  const wall = (performance.now() - t0) / STEPS;
  const peak = lr.peakMemory();
  const wgpu = lr.webgpuStats();
  let gpuStep = Number.NaN;
  if (useTs && prof) {
    const ts = await prof.readTimestamps();
    const d: number[] = [];
    for (let i = 0; i + 1 < ts.length; i += 2) d.push((ts[i + 1] - ts[i]) / 1e6);
    const tail = d.slice(Math.min(2, d.length - 1));
    gpuStep = tail.reduce((a, b) => a + b, 0) / tail.length;
  }
  const cpuStep = cpuMs.reduce((a, b) => a + b, 0) / cpuMs.length;

  console.log(
    `\n## ${kind} (LoRA r=8 α=16 on q_proj,v_proj${COMPILE ? ', compiled' : ''}), ${nParams} trained parameters`,
  );
  console.log(`RESULT ${kind} tokens_per_s ${((B * T) / (wall / 1000)).toFixed(0)}`);
  console.log(`RESULT ${kind} step_ms ${f2(wall)} cpu_step_ms ${f2(cpuStep)} gpu_step_ms ${f2(gpuStep)}`);
  console.log(`loss: first ${first.toFixed(4)}, last ${lastLoss.toFixed(4)}`);
  console.log(
    `RESULT ${kind} base_MiB ${f1((BITS === 'f32' ? f32Base : fp.quantized.bytes) / MiB)} quantized/f32 ${fp.quantized.f32Bytes ? (fp.quantized.bytes / fp.quantized.f32Bytes).toFixed(3) : '-'} model_MiB ${f1(fp.bytes / MiB)} model/f32 ${(fp.bytes / fp.f32Bytes).toFixed(3)}`,
  );
  if (wgpu)
    console.log(
      `RESULT ${kind} peak_in_use_MiB ${f1(wgpu.peakBytesInUse / MiB)} peak_reserved_MiB ${f1(wgpu.peakBytesReserved / MiB)}`,
    );
  console.log(`RESULT ${kind} lr_peakMemory_MiB ${f1(peak / MiB)}`);
  const plan = compiled.memoryPlan();
  if (plan)
    console.log(
      `RESULT ${kind} plan peak_MiB ${f1(plan.peakBytes / MiB)} arena_MiB ${f1(plan.arenaBytes / MiB)} unplanned_MiB ${f1(plan.unplannedBytes / MiB)} (${JSON.stringify(compiled.stats)})`,
    );

  // per-kernel GPU time of one step (each dispatch in its own timestamped pass)
  if (KPROF > 0 && prof) {
    prof.profileKernels(true);
    compiled(ids).dispose();
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
  compiled.dispose();
  opt.dispose();
  ids.dispose();
}

async function main(): Promise<void> {
  const r = await lr.init({ backend: device === 'webgpu' ? 'webgpu' : 'cpu' });
  console.log(`# train-llama: ${r.description}`);
  console.log(
    `config: ${L} layers, hidden ${C}, ${H} heads / ${KV} kv, intermediate ${FF}, vocab ${V} (tied); batch ${B} × ${T}; base ${BITS}${BITS === 'nf4' || BITS === 'int8' ? ` (block ${BLOCK}${DQ ? ', double quant' : ''})` : ''}; AdamW lr 1e-4 wd 0.01; ${STEPS} timed steps after ${WARMUP} warm-up`,
  );
  const model = newModel();
  const q0 = performance.now();
  if (BITS !== 'f32') await quantizeModel(model, { bits: BITS, blockSize: BLOCK, doubleQuant: DQ });
  if (BITS !== 'f32') console.log(`quantized on the CPU in ${f1((performance.now() - q0) / 1000)} s`);
  await model.to(device);
  if (DECODE > 0) await decodeBench(model);
  if (TRAIN) await trainBench(model);
  model.dispose();
  if (device === 'webgpu') lr.destroyWebGPU();
}

await main();
