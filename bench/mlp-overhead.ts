/**
 * Per-step overhead on WebGPU (issue 9): an MLP training step (B=512, 1024-4096-1024, ReLU, MSE,
 * Adam) on lowrank's WebGPU backend and, side by side on the same GPUDevice, on
 * @tensorflow/tfjs-backend-webgpu 4.22. `bench/mlp_torch.py` is the PyTorch reference.
 * Prints ms per step (steps back to back, one GPU sync at the end), the CPU time spent recording
 * a step, and dispatches / submits per step.
 *
 *   bash .gpu/run.sh mlp-overhead            options: --batch 512 --inp 1024 --hidden 4096 --out 1024 --steps 50 --tfjs 1
 */
import '@tensorflow/tfjs-backend-cpu';
import * as lr from '../packages/tensor/src/index.js';
import { numberArg } from './args.js';
import { lowrankMlp, type MlpShape, tfjsMlp } from './mlp-common.js';
import { setup, syncTf } from './webgpu-common.js';

const shape: MlpShape = {
  batch: numberArg('batch', 512),
  inp: numberArg('inp', 1024),
  hidden: numberArg('hidden', 4096),
  out: numberArg('out', 1024),
};
const STEPS = numberArg('steps', 50);
const TFJS = numberArg('tfjs', 1) !== 0;

const s = await setup();
console.log(
  `# mlp-overhead: ${s.description}; B=${shape.batch}, ${shape.inp}-${shape.hidden}-${shape.out}, ReLU, MSE, Adam`,
);
const flush = (): Promise<void> => lr.getBackend('webgpu').flush?.() ?? Promise.resolve();

const ours = lowrankMlp(shape, 'webgpu');
for (let i = 0; i < 5; i++) {
  const l = ours.step();
  await l.item();
  l.dispose();
}
const st0 = { ...lr.webgpuStats()! };
let cpuMs = 0;
let best = Number.POSITIVE_INFINITY;
for (let rep = 0; rep < 3; rep++) {
  const t0 = performance.now();
  let last: lr.Tensor | null = null;
  for (let i = 0; i < STEPS; i++) {
    last?.dispose();
    const c = performance.now();
    last = ours.step();
    cpuMs += performance.now() - c;
  }
  await last?.item();
  last?.dispose();
  best = Math.min(best, (performance.now() - t0) / STEPS);
}
const st1 = lr.webgpuStats()!;
const n = 3 * STEPS;
console.log(
  `lowrank webgpu: ${best.toFixed(2)} ms/step (best of 3 × ${STEPS}); CPU recording ${(cpuMs / n).toFixed(2)} ms/step; ` +
    `${((st1.dispatches - st0.dispatches) / n).toFixed(1)} dispatches, ${((st1.submits - st0.submits) / n).toFixed(2)} submits per step`,
);
console.log(`RESULT mlp lowrank_ms ${best.toFixed(3)}`);
ours.dispose();
await flush();

if (TFJS) {
  const theirs = tfjsMlp(shape);
  for (let i = 0; i < 5; i++) {
    const l = theirs.step();
    await l.data();
    l.dispose();
  }
  let tbest = Number.POSITIVE_INFINITY;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) theirs.step().dispose();
    await syncTf(s);
    tbest = Math.min(tbest, (performance.now() - t0) / STEPS);
  }
  console.log(`tfjs-webgpu: ${tbest.toFixed(2)} ms/step`);
  console.log(`RESULT mlp tfjs_ms ${tbest.toFixed(3)} tfjs/lowrank ${(tbest / best).toFixed(2)}`);
  theirs.dispose();
}
lr.destroyWebGPU();
process.exit(0);
