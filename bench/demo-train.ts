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
import { arg, numberArg } from './args.js';
import { demoTraining } from './demo-step.js';

const opts = {
  model: arg('model', 'char'),
  steps: numberArg('steps', 8),
  warmup: numberArg('warmup', 2),
  // rows per block of the causal attention gemms on the Wasm backend (0: whole products); a
  // config ending in -cbN (`wasm1-cb0`) sets it for that run
  causalBlock: numberArg('causal-block', 32),
};
for (const c of arg('configs', 'ts,wasm1,wasm2').split(',')) await demoTraining(c, opts);
process.exit(0);
