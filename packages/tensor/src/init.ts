import { installCpuAtLoad, useTsCpu, useWasmCpu } from './backends/wasm/default.js';
import { type AdapterDescription, autoDevice, describeAdapter } from './device-rule.js';
import { getBackend, getDefaultDevice, hasBackend, setDefaultDevice } from './engine/registry.js';
import type { Device } from './storage.js';

// Node: the Wasm kernels on one thread from the start (LOWRANK_CPU=ts keeps the TypeScript ones)
installCpuAtLoad();

/** Options of `init`. */
export interface InitOptions {
  /**
   * 'auto' (default) follows `autoDevice`: WebGPU on a hardware GPU; the CPU on a software adapter
   * (slower than the CPU backend: measured) or without an adapter (`InitResult.reason` says which),
   * and the CPU with a one-line notice when creating the WebGPU backend failed.
   * 'cpu' runs the Wasm SIMD kernels (the TypeScript ones where the engine lacks Wasm SIMD128);
   * 'cpu-ts' is device 'cpu' with the TypeScript kernels: the reference implementation.
   */
  backend?: Device | 'auto' | 'cpu-ts';
  /**
   * Threads of the CPU's Wasm kernels, the caller included (default: the number of cores; one
   * where SharedArrayBuffer or workers are missing, e.g. a page that is not cross-origin
   * isolated, which the backend's description then says). Results do not depend on it.
   */
  threads?: number;
  /** Called with the notice when 'auto' takes the CPU because WebGPU failed (default: console.warn). */
  onNotice?: (message: string) => void;
  /** Options passed to the WebGPU backend (power preference, a GPU to use instead of discovery). */
  webgpu?: import('./backends/webgpu/index.js').WebGPUInitOptions;
}

/** What `init` chose. */
export interface InitResult {
  /** The device new tensors now go to. */
  device: Device;
  /** The backend's description (the GPU adapter's name on WebGPU). */
  description: string;
  /** Why this device: 'asked for', or the rule's reason under 'auto' (see `autoDevice`). */
  reason: string;
}

/** The adapter of the WebGPU backend `init` created (null: created from a given device). */
let liveAdapter: AdapterDescription | null = null;

/**
 * Chooses the default device. `await init({ backend: 'webgpu' })` fails when no adapter exists
 * and takes a software adapter too; `'auto'` follows `autoDevice` (a hardware GPU, else the CPU)
 * and says so when it takes the CPU.
 *
 * @example
 * const { device } = await lr.init({ backend: 'auto' }); // 'webgpu' on a hardware GPU
 * await lr.init({ backend: 'cpu' }); // always available: Wasm SIMD kernels on every core
 * await lr.init({ backend: 'cpu', threads: 1 }); // the same on the calling thread only
 * await lr.init({ backend: 'cpu-ts' }); // device 'cpu' with the TypeScript reference kernels
 */
export async function init(options: InitOptions = {}): Promise<InitResult> {
  const wanted = options.backend ?? 'auto';
  if (wanted !== 'cpu' && wanted !== 'cpu-ts' && wanted !== 'webgpu' && wanted !== 'auto') {
    throw new Error(
      `init: unknown backend '${String(wanted)}' (expected 'cpu', 'cpu-ts', 'webgpu' or 'auto')`,
    );
  }
  const threads = options.threads;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new Error(`init: threads must be a positive integer, got ${threads}`);
  }
  const cpu = async (reason: string): Promise<InitResult> => {
    if (wanted === 'cpu-ts') useTsCpu();
    else await useWasmCpu(threads);
    setDefaultDevice('cpu');
    return { device: 'cpu', description: getBackend('cpu').description, reason };
  };
  if (wanted === 'cpu' || wanted === 'cpu-ts') return cpu('asked for');
  let reason = wanted === 'webgpu' ? 'asked for' : 'a hardware GPU adapter';
  if (hasBackend('webgpu')) {
    // a backend made earlier (by init({ backend: 'webgpu' }), say): 'auto' applies the rule to it
    if (wanted === 'auto' && liveAdapter) {
      const choice = autoDevice(liveAdapter);
      if (choice.device === 'cpu') return cpu(choice.reason);
    }
    if (wanted === 'auto' && !liveAdapter) reason = 'a WebGPU device given to init';
  } else {
    const webgpu = await import('./backends/webgpu/index.js');
    const given = options.webgpu?.device !== undefined;
    let adapter: GPUAdapter | null = null;
    try {
      if (!given) adapter = await webgpu.requestWebGPUAdapter(options.webgpu ?? {});
      if (wanted === 'auto' && !given) {
        const choice = autoDevice(adapter ? describeAdapter(adapter) : null);
        if (choice.device === 'cpu') return cpu(choice.reason);
      }
      if (given && wanted === 'auto') reason = 'a WebGPU device given to init';
      await webgpu.createWebGPUBackend(options.webgpu ?? {}, adapter ?? undefined);
      liveAdapter = adapter ? describeAdapter(adapter) : null;
    } catch (e) {
      if (wanted === 'webgpu') throw e;
      const failure = `WebGPU unavailable (${(e as Error).message})`;
      (options.onNotice ?? console.warn)(`lowrank: ${failure}; using the CPU backend`);
      return cpu(failure);
    }
  }
  setDefaultDevice('webgpu');
  return { device: 'webgpu', description: getBackend('webgpu').description, reason };
}

export { getDefaultDevice };
