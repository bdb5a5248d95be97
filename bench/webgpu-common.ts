/**
 * Shared set-up of the WebGPU benchmarks: lowrank's WebGPU backend and @tensorflow/tfjs-backend-webgpu
 * 4.22 on the same Dawn device in the same process, and a timer that waits for the GPU.
 */
import * as lr from '@lowrank/tensor';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import * as tf from '@tensorflow/tfjs-core';

export { arg } from './args.js';
export { lr, tf };

export interface Setup {
  device: GPUDevice;
  description: string;
  tfBackend: WebGPUBackend;
}

export async function setup(): Promise<Setup> {
  const r = await lr.init({ backend: 'webgpu' });
  const device = lr.webgpuDevice();
  if (!device) throw new Error('no WebGPU device');
  // tfjs looks for navigator.gpu before it accepts a device; Node has none
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (!g.navigator?.gpu)
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: {} }, configurable: true });
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  const tfBackend = new WebGPUBackend(device);
  tf.registerBackend('webgpu', () => tfBackend); // its kernels are registered under 'webgpu'
  await tf.setBackend('webgpu');
  await tf.ready();
  return { device, description: r.description, tfBackend };
}

/** Waits until lowrank's queued work has run on the GPU. */
export function syncLowrank(): Promise<void> {
  return lr.getBackend('webgpu').flush?.() ?? Promise.resolve();
}

/** Waits until tfjs's queued work has run on the GPU. */
export async function syncTf(s: Setup): Promise<void> {
  const pending = (s.tfBackend as unknown as { commandEncoder: GPUCommandEncoder | null }).commandEncoder;
  if (pending) {
    s.tfBackend.endComputePassEncoder();
    s.tfBackend.submitQueue();
  }
  await s.device.queue.onSubmittedWorkDone();
}

/**
 * Seconds per call of `fn` on the GPU: a warm-up (compiles pipelines), then batches of calls
 * doubled until one batch takes ≥ minMs; the best of 3 such batches.
 */
export async function timeIt(fn: () => void, sync: () => Promise<void>, minMs = 300): Promise<number> {
  fn();
  await sync();
  fn();
  await sync();
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    await sync();
    const dt = performance.now() - t0;
    if (dt >= minMs || reps >= 4096) break;
    reps *= Math.min(8, Math.max(2, Math.ceil(minMs / Math.max(dt, 1))));
  }
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    await sync();
    best = Math.min(best, (performance.now() - t0) / reps);
  }
  return best / 1000;
}

export function fmt(x: number, digits = 2): string {
  return x.toFixed(digits).padStart(8);
}
