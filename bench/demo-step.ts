/**
 * The demo's LoRA training loop (examples/demo.ts settings: r=8, α=16, B=8, T=128, Adam, lr 1e-2)
 * on one kernel configuration, timed: what bench/demo-train.ts runs config by config and
 * bench/wasm-cpu.ts runs after its matmul and MLP cases in the same process (issue 16).
 *
 * A configuration is `ts` (the TypeScript kernels, `cpu-ts`), `wasmN` (the Wasm kernels on N
 * threads) or `webgpu`, with suffixes: `-eager` (LMTrainer's `compile: false`), `-f64x2` (every
 * elementwise program by the f64x2 Wasm compiler), `-sm64` (the attention's softmax in float64),
 * `-cbN` (N rows per block of the causal attention gemms).
 *
 * @example
 * const r = await demoTraining('wasm2', { model: 'char', steps: 8, warmup: 2 });
 * r.tokensPerSecond;
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { applyLora } from '../packages/lora/src/index.js';
import * as lr from '../packages/lowrank/src/index.js';
import { AutoModelForCausalLM, loadTokenizer } from '../packages/models/src/node.js';
import { setAttentionSoftmax, setCausalBlockRows } from '../packages/tensor/src/backends/wasm/attention.js';
import { useF32x4Elementwise } from '../packages/tensor/src/backends/wasm/elementwise.js';

const here = (p: string): string => new URL(p, import.meta.url).pathname;
const MODELS: Record<string, { dir: string; targetModules: string[] }> = {
  char: { dir: 'shakespeare-char', targetModules: ['c_attn', 'c_proj', 'c_fc'] },
  llama: {
    dir: 'llama-shakespeare-brown',
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  },
};
const e2e = (f: string): lr.E2EExample[] => lr.parseE2E(readFileSync(here(`../data/e2e/${f}`), 'utf8'));

export interface DemoOptions {
  /** 'char' (the GPT-2-tiny char model, LoRA on c_attn, c_proj, c_fc) or 'llama' (the 5.8M Llama, every projection). */
  model: string;
  steps: number;
  /** Untimed steps first (≥ 2 for compiled steps: a warm-up call and a traced one). */
  warmup: number;
  /** Rows per block of the causal attention gemms unless the config says `-cbN`. */
  causalBlock?: number;
}

export interface DemoResult {
  config: string;
  description: string;
  tokensPerSecond: number;
  msPerStep: number;
  /** The process's CPU time per step (all threads). */
  cpuMsPerStep: number;
  losses: number[];
}

export async function demoTraining(name: string, opts: DemoOptions): Promise<DemoResult> {
  const chosen = MODELS[opts.model];
  if (!chosen)
    throw new Error(`--model: expected one of ${Object.keys(MODELS).join(', ')}, got ${opts.model}`);
  const ckpt = here(`../examples/checkpoints/${chosen.dir}`);
  const STEPS = opts.steps;
  const WARMUP = opts.warmup;
  const cb = /-cb(\d+)$/.exec(name);
  setCausalBlockRows(cb ? Number(cb[1]) : (opts.causalBlock ?? 32));
  const base = name.replace(/-cb\d+$/, '');
  const eager = base.endsWith('-eager');
  const f64x2 = base.endsWith('-f64x2');
  const sm64 = base.endsWith('-sm64');
  const config = base.replace(/-(eager|f64x2|sm64)$/, '');
  useF32x4Elementwise(!f64x2);
  setAttentionSoftmax(sm64 ? 'f64' : 'f32');
  const device: lr.Device = config === 'webgpu' ? 'webgpu' : 'cpu';
  if (config === 'ts') await lr.init({ backend: 'cpu-ts' });
  else if (config === 'webgpu') await lr.init({ backend: 'webgpu' });
  else await lr.init({ backend: 'cpu', threads: Number(config.replace('wasm', '')) });
  const model = await AutoModelForCausalLM.fromPretrained(ckpt, { device });
  const tok = loadTokenizer(ckpt, model.config.vocab_size);
  const train = lr.e2eStream(e2e('valid.txt'), (s) => tok.encode(s));
  const lora = applyLora(model, {
    r: 8,
    loraAlpha: 16,
    targetModules: chosen.targetModules,
    seed: 0,
  });
  const trainer = new lr.LMTrainer(model, lora.trainableParameters(), {
    steps: STEPS + WARMUP,
    batchSize: 8,
    blockSize: 128,
    lr: 1e-2,
    warmupSteps: 1,
    weightDecay: 0,
    seed: 0,
    compile: !eager,
  });
  const losses: number[] = [];
  for (let s = 0; s < WARMUP; s++) losses.push(await trainer.trainStep(train.tokens, train.targetMask));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let s = 0; s < STEPS; s++) losses.push(await trainer.trainStep(train.tokens, train.targetMask));
  const sec = (performance.now() - t0) / 1000;
  // CPU time of the process (all its threads: the worker pool's too): less sensitive than wall
  // time to other processes sharing the cores, though not immune (caches, frequency)
  const cpu = process.cpuUsage(c0);
  const cpuMs = (cpu.user + cpu.system) / 1000 / STEPS;
  const tps = (STEPS * 8 * 128) / sec;
  const result: DemoResult = {
    config: name,
    description: lr.getBackend(device).description,
    tokensPerSecond: tps,
    msPerStep: (sec * 1000) / STEPS,
    cpuMsPerStep: cpuMs,
    losses,
  };
  console.log(
    `${name.padEnd(12)} ${result.description.padEnd(44)} ${tps.toFixed(0).padStart(6)} tok/s ` +
      `(${result.msPerStep.toFixed(0)} ms/step, CPU ${cpuMs.toFixed(0)} ms/step, load ${loadavg()[0].toFixed(1)})  losses ${losses.map((l) => l.toFixed(4)).join(' ')}`,
  );
  return result;
}
