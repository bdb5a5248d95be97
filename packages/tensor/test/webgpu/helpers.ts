import type { Tensor, TypedArray } from '../../src/index.js';
import * as lr from '../../src/index.js';

/**
 * Shared set-up of the WebGPU tests: one device for the file (destroyed in afterAll so the Dawn
 * thread lets vitest exit), a seeded generator, and comparison with the CPU backend.
 */

/** Why WebGPU tests are skipped, or null when an adapter exists and the backend initialised. */
export async function initWebGPU(): Promise<string | null> {
  try {
    await lr.init({ backend: 'webgpu' });
    lr.setDefaultDevice('cpu');
    return null;
  } catch (e) {
    const reason = `no WebGPU adapter: ${(e as Error).message}`;
    console.warn(`[webgpu tests skipped] ${reason}`);
    return reason;
  }
}

/** Deterministic pseudo-random numbers (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Kind = 'float32' | 'int32' | 'bool' | 'positive' | 'special' | 'trig';

/** A random CPU tensor: float N(0,1)-ish, small ints, bools, positives, or floats with NaN/±inf/±0. */
export function randomTensor(shape: readonly number[], kind: Kind, seed: number): Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  if (kind === 'int32') {
    const v = new Int32Array(n);
    for (let i = 0; i < n; i++) v[i] = Math.floor(r() * 21) - 10;
    return lr.fromTypedArray(v, shape, { device: 'cpu' });
  }
  if (kind === 'bool') {
    const v = new Uint8Array(n);
    for (let i = 0; i < n; i++) v[i] = r() < 0.5 ? 1 : 0;
    return lr.fromTypedArray(v, shape, { device: 'cpu' });
  }
  const v = new Float32Array(n);
  const specials = [
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    0,
    -0,
    1e30,
    -1e-30,
    0.5,
    -2.5,
  ];
  for (let i = 0; i < n; i++) {
    if (kind === 'positive') v[i] = 0.05 + r() * 4;
    else if (kind === 'trig') v[i] = r() < 0.1 ? specials[Math.floor(r() * 5)] : (r() - 0.5) * 200;
    else if (kind === 'special' && r() < 0.3) v[i] = specials[Math.floor(r() * specials.length)];
    else v[i] = (r() - 0.5) * 6;
  }
  return lr.fromTypedArray(v, shape, { device: 'cpu' });
}

/** The same values on the GPU (a new tensor). */
export async function toGPU(t: Tensor): Promise<Tensor> {
  return t.to('webgpu');
}

export interface Tolerance {
  rtol: number;
  atol: number;
}

export const EXACT: Tolerance = { rtol: 0, atol: 0 };

function close(a: number, b: number, tol: Tolerance): boolean {
  if (Number.isNaN(b)) return Number.isNaN(a);
  if (!Number.isFinite(b)) return a === b;
  if (Number.isNaN(a)) return false;
  return Math.abs(a - b) <= tol.atol + tol.rtol * Math.abs(b);
}

/** Fails with the first few mismatches (GPU value vs CPU value, flat index). */
export function expectClose(gpu: TypedArray, cpu: TypedArray, tol: Tolerance, label: string): void {
  if (gpu.length !== cpu.length) throw new Error(`${label}: length ${gpu.length} vs cpu ${cpu.length}`);
  if (gpu.constructor !== cpu.constructor) {
    throw new Error(`${label}: ${gpu.constructor.name} vs cpu ${cpu.constructor.name}`);
  }
  const bad: string[] = [];
  for (let i = 0; i < cpu.length && bad.length < 5; i++) {
    if (!close(gpu[i], cpu[i], tol)) bad.push(`[${i}] gpu ${gpu[i]} cpu ${cpu[i]}`);
  }
  if (bad.length > 0)
    throw new Error(`${label}: mismatches (rtol ${tol.rtol}, atol ${tol.atol}): ${bad.join('; ')}`);
}

/** Runs `f` on CPU tensors and on GPU copies of them; compares the results (and their shapes/dtypes). */
export async function compare(
  label: string,
  inputs: readonly Tensor[],
  f: (...xs: Tensor[]) => Tensor,
  tol: Tolerance = EXACT,
): Promise<void> {
  const gpuInputs = await Promise.all(inputs.map((t) => toGPU(t)));
  let cpuOut: Tensor;
  try {
    cpuOut = f(...inputs);
  } catch (e) {
    // the CPU refuses: the GPU must refuse with the same message
    let gpuError: unknown = null;
    try {
      const g = f(...gpuInputs);
      await g.data();
      g.dispose();
    } catch (e2) {
      gpuError = e2;
    }
    lr.dispose(gpuInputs);
    if (!gpuError) throw new Error(`${label}: cpu threw '${(e as Error).message}' but webgpu did not`);
    if ((gpuError as Error).message !== (e as Error).message) {
      throw new Error(
        `${label}: cpu threw '${(e as Error).message}', webgpu '${(gpuError as Error).message}'`,
      );
    }
    return;
  }
  const gpuOut = f(...gpuInputs);
  try {
    if (gpuOut.device !== 'webgpu') throw new Error(`${label}: result on ${gpuOut.device}`);
    if (gpuOut.dtype !== cpuOut.dtype)
      throw new Error(`${label}: dtype ${gpuOut.dtype} vs cpu ${cpuOut.dtype}`);
    if (gpuOut.shape.join(',') !== cpuOut.shape.join(',')) {
      throw new Error(`${label}: shape [${gpuOut.shape}] vs cpu [${cpuOut.shape}]`);
    }
    expectClose(await gpuOut.data(), await cpuOut.data(), tol, label);
  } finally {
    lr.dispose(gpuInputs, gpuOut, cpuOut);
  }
}
