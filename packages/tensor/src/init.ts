import { installCpuAtLoad, useTsCpu, useWasmCpu } from './backends/wasm/default.js';
import { getBackend, getDefaultDevice, hasBackend, setDefaultDevice } from './engine/registry.js';
import type { Device } from './storage.js';

// Node: the Wasm kernels on one thread from the start (LOWRANK_CPU=ts keeps the TypeScript ones)
installCpuAtLoad();

/** Options of `init`. */
export interface InitOptions {
  /**
   * 'auto' (default) takes WebGPU when an adapter exists, otherwise the CPU with a one-line notice.
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
  /** Called with the notice when 'auto' falls back to the CPU (default: console.warn). */
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
}

/**
 * Chooses the default device. `await init({ backend: 'webgpu' })` fails when no adapter exists;
 * `'auto'` falls back to the CPU and says so once.
 *
 * @example
 * const { device } = await lr.init({ backend: 'auto' }); // 'webgpu' when an adapter exists
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
  const cpu = async (): Promise<InitResult> => {
    if (wanted === 'cpu-ts') useTsCpu();
    else await useWasmCpu(threads);
    setDefaultDevice('cpu');
    return { device: 'cpu', description: getBackend('cpu').description };
  };
  if (wanted === 'cpu' || wanted === 'cpu-ts') return cpu();
  if (!hasBackend('webgpu')) {
    const { createWebGPUBackend } = await import('./backends/webgpu/index.js');
    try {
      await createWebGPUBackend(options.webgpu ?? {});
    } catch (e) {
      if (wanted === 'webgpu') throw e;
      const notice = `lowrank: WebGPU unavailable (${(e as Error).message}); using the CPU backend`;
      (options.onNotice ?? console.warn)(notice);
      return cpu();
    }
  }
  setDefaultDevice('webgpu');
  return { device: 'webgpu', description: getBackend('webgpu').description };
}

export { getDefaultDevice };
