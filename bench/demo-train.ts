/**
 * The demo's training loop (examples/demo.ts: LoRA r=8, B=8, T=128, Adam) in ONE process on the
 * CPU, on `--model char` (the older GPT-2-tiny char model, LoRA on c_attn, c_proj, c_fc; the
 * default) or `--model llama` (the demo's default now: the 5.8M byte-level-BPE Llama of
 * examples/checkpoints/llama-shakespeare-brown, LoRA on every projection), with each kernel set in turn: the
 * TypeScript kernels (`cpu-ts`) and the Wasm kernels on 1 and 2 threads. Every configuration
 * starts from the same checkpoint and seed, so their losses must agree (printed, to check).
 * Tokens/s counts B·T per step, as the demo's progress line does, after `--warmup` steps; the
 * process's CPU time per step is printed beside it (what a loaded machine distorts least).
 * `webgpu` runs the same loop on the WebGPU adapter: on a software adapter (lavapipe), this is the
 * measurement behind init's 'auto' rule (software adapters lose to the CPU; docs/perf.md).
 *
 * A config ending in `-eager` (`wasm2-eager`) runs the steps eagerly (LMTrainer's `compile: false`);
 * the others run compiled steps (lr.compile), the trainer's default. One ending in `-f64x2`
 * (`wasm1-f64x2`) compiles every elementwise program with the f64x2 Wasm compiler (no f32x4
 * path: the comparison of docs/perf.md, issue 16). One ending in `-sm64` (`wasm1-sm64`) runs the
 * attention's row softmax in float64 (the kernel before `softmax_f32`).
 *
 *   node --conditions=source --import tsx bench/demo-train.ts [--model char|llama --steps 8 --warmup 2 --configs ts,wasm1,wasm2,webgpu,wasm2-eager --causal-block 32]
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { applyLora } from '../packages/lora/src/index.js';
import * as lr from '../packages/lowrank/src/index.js';
import { AutoModelForCausalLM, loadTokenizer } from '../packages/models/src/node.js';
import { setAttentionSoftmax, setCausalBlockRows } from '../packages/tensor/src/backends/wasm/attention.js';
import { useF32x4Elementwise } from '../packages/tensor/src/backends/wasm/elementwise.js';
import { arg, numberArg } from './args.js';

const STEPS = numberArg('steps', 8);
const WARMUP = numberArg('warmup', 2); // ≥ 2 for compiled steps: a warm-up call and a traced one
const CONFIGS = arg('configs', 'ts,wasm1,wasm2').split(',');
const MODEL = arg('model', 'char');
// rows per block of the causal attention gemms on the Wasm backend (0: whole products); a
// config ending in -cbN (`wasm1-cb0`) sets it for that run
const CAUSAL_BLOCK = numberArg('causal-block', 32);
const here = (p: string): string => new URL(p, import.meta.url).pathname;
const MODELS: Record<string, { dir: string; targetModules: string[] }> = {
  char: { dir: 'shakespeare-char', targetModules: ['c_attn', 'c_proj', 'c_fc'] },
  llama: {
    dir: 'llama-shakespeare-brown',
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  },
};
const chosen = MODELS[MODEL];
if (!chosen) throw new Error(`--model: expected one of ${Object.keys(MODELS).join(', ')}, got ${MODEL}`);
const ckpt = here(`../examples/checkpoints/${chosen.dir}`);
const e2e = (f: string): lr.E2EExample[] => lr.parseE2E(readFileSync(here(`../data/e2e/${f}`), 'utf8'));

async function run(name: string): Promise<void> {
  const cb = /-cb(\d+)$/.exec(name);
  setCausalBlockRows(cb ? Number(cb[1]) : CAUSAL_BLOCK);
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
  console.log(
    `${name.padEnd(12)} ${lr.getBackend(device).description.padEnd(44)} ${tps.toFixed(0).padStart(6)} tok/s ` +
      `(${((sec * 1000) / STEPS).toFixed(0)} ms/step, CPU ${cpuMs.toFixed(0)} ms/step, load ${loadavg()[0].toFixed(1)})  losses ${losses.map((l) => l.toFixed(4)).join(' ')}`,
  );
}

for (const c of CONFIGS) await run(c);
process.exit(0);
