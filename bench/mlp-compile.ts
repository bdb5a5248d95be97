/**
 * Issue 15's MLP target: one training step (B=512, 1024-4096-1024, ReLU, MSE, Adam) on WebGPU,
 * in ONE process on one GPU: lowrank eager, lowrank compiled (`lr.compile`: replays of the
 * recorded kernels), tfjs-webgpu 4.22 on lowrank's GPUDevice, and jax-js 0.1.25 on WebGPU with
 * the whole step jitted (its own Dawn instance on the same GPU). `bench/mlp_torch.py` is the
 * PyTorch reference (same device command). Prints ms per step (steps back to back, best of 3
 * runs of --steps; jax-js realises each step, as its jit returns lazily) and the CPU time spent
 * in each lowrank step call.
 *
 *   bash .gpu/run.sh mlp-compile     options: --batch 512 --inp 1024 --hidden 4096 --out 1024 --steps 50 --tfjs 1 --jax 1
 */
import { nodeGPU } from '../packages/tensor/src/backends/webgpu/gpu-node.js';

// jax-js looks for navigator.gpu and sniffs navigator.userAgent when it loads
// (../shared/reference/peers.md): lowrank's Dawn instance serves it (its own adapter and device)
Object.defineProperty(globalThis, 'navigator', {
  value: { gpu: await nodeGPU(), userAgent: 'Node' },
  configurable: true,
});

const { defaultDevice, init: jaxInit } = await import('@jax-js/jax');
const { numberArg } = await import('./args.js');
const { lowrankMlp, tfjsMlp } = await import('./mlp-common.js');
const { jaxMlp } = await import('./mlp-jax.js');
const { lr, setup, syncTf } = await import('./webgpu-common.js');

const shape = {
  batch: numberArg('batch', 512),
  inp: numberArg('inp', 1024),
  hidden: numberArg('hidden', 4096),
  out: numberArg('out', 1024),
};
const STEPS = numberArg('steps', 50);
const TFJS = numberArg('tfjs', 1) !== 0;
const JAX = numberArg('jax', 1) !== 0;

const s = await setup();
console.log(
  `# mlp-compile: ${s.description}; B=${shape.batch}, ${shape.inp}-${shape.hidden}-${shape.out}, ReLU, MSE, Adam`,
);
const flush = (): Promise<void> => lr.getBackend('webgpu').flush?.() ?? Promise.resolve();

async function lowrank(compile: boolean): Promise<number> {
  const mlp = lowrankMlp(shape, 'webgpu', { compile });
  for (let i = 0; i < 5; i++) {
    const l = mlp.step();
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
      last = mlp.step();
      cpuMs += performance.now() - c;
    }
    await last?.item();
    last?.dispose();
    best = Math.min(best, (performance.now() - t0) / STEPS);
  }
  const st1 = lr.webgpuStats()!;
  const n = 3 * STEPS;
  const name = compile ? 'compiled' : 'eager';
  console.log(
    `lowrank ${name}: ${best.toFixed(3)} ms/step; CPU in the step call ${(cpuMs / n).toFixed(3)} ms; ` +
      `${((st1.dispatches - st0.dispatches) / n).toFixed(1)} dispatches, ${((st1.submits - st0.submits) / n).toFixed(2)} submits, ` +
      `${((st1.buffersCreated - st0.buffersCreated) / n).toFixed(2)} buffers created per step`,
  );
  console.log(`RESULT mlp lowrank_${name}_ms ${best.toFixed(3)} cpu_ms ${(cpuMs / n).toFixed(3)}`);
  mlp.dispose();
  await flush();
  return best;
}

const eager = await lowrank(false);
const compiled = await lowrank(true);
console.log(`RESULT mlp eager/compiled ${(eager / compiled).toFixed(2)}`);

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
  console.log(
    `RESULT mlp tfjs_webgpu_ms ${tbest.toFixed(3)} tfjs/lowrank_compiled ${(tbest / compiled).toFixed(2)}`,
  );
  theirs.dispose();
}

if (JAX) {
  await jaxInit('webgpu');
  defaultDevice('webgpu');
  const j = jaxMlp(shape, { read: false });
  for (let i = 0; i < 3; i++) await j.step();
  let jbest = Number.POSITIVE_INFINITY;
  const n = Math.min(STEPS, 20);
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await j.step();
    jbest = Math.min(jbest, (performance.now() - t0) / n);
  }
  console.log(
    `RESULT mlp jax_webgpu_ms ${jbest.toFixed(3)} jax/lowrank_compiled ${(jbest / compiled).toFixed(2)}`,
  );
  j.dispose();
}
lr.destroyWebGPU();
process.exit(0);
