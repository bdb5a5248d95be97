/**
 * CPU overhead benchmark (issue 9): a small-MLP training step (B=64, 256-512-256, ReLU, MSE, Adam)
 * on lowrank's CPU backend next to @tensorflow/tfjs-backend-cpu 4.22 in the same process.
 * Prints the median ms per step of each and the ratio tfjs / lowrank (target ≥ 5).
 *
 *   node --conditions=source --import tsx bench/cpu-mlp.ts [--batch 64 --inp 256 --hidden 512 --out 256 --ms 3000]
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lr from '../packages/tensor/src/index.js';
import { numberArg } from './args.js';
import { lowrankMlp, type MlpShape, tfjsMlp } from './mlp-common.js';

const shape: MlpShape = {
  batch: numberArg('batch', 64),
  inp: numberArg('inp', 256),
  hidden: numberArg('hidden', 512),
  out: numberArg('out', 256),
};
const MS = numberArg('ms', 3000);

/** Median ms per call after a warm-up of MS/3; samples for MS. */
async function median(once: () => Promise<void>): Promise<{ med: number; min: number; n: number }> {
  const w0 = performance.now();
  while (performance.now() - w0 < MS / 3) await once();
  const xs: number[] = [];
  const t0 = performance.now();
  while (xs.length < 5 || performance.now() - t0 < MS) {
    const a = performance.now();
    await once();
    xs.push(performance.now() - a);
  }
  xs.sort((a, b) => a - b);
  return { med: xs[Math.floor(xs.length / 2)], min: xs[0], n: xs.length };
}

await lr.init({ backend: 'cpu' });
await tf.setBackend('cpu');
console.log(
  `# cpu-mlp: B=${shape.batch}, ${shape.inp}-${shape.hidden}-${shape.out}, ReLU, MSE, Adam; Node ${process.version}`,
);

const ours = lowrankMlp(shape, 'cpu');
const a = await median(async () => {
  const loss = ours.step();
  await loss.item();
  loss.dispose();
});
ours.dispose();

const theirs = tfjsMlp(shape);
const b = await median(async () => {
  const loss = theirs.step();
  await loss.data();
  loss.dispose();
});
theirs.dispose();

console.log(`lowrank cpu : ${a.med.toFixed(2)} ms/step (min ${a.min.toFixed(2)}, ${a.n} steps)`);
console.log(`tfjs-cpu    : ${b.med.toFixed(2)} ms/step (min ${b.min.toFixed(2)}, ${b.n} steps)`);
console.log(
  `RESULT cpu_mlp lowrank_ms ${a.med.toFixed(2)} tfjs_ms ${b.med.toFixed(2)} tfjs/lowrank ${(b.med / a.med).toFixed(2)}`,
);
