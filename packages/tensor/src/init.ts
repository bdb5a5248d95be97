import { registerCpuBackend } from './backends/cpu/index.js';
import { getBackend, getDefaultDevice, hasBackend, setDefaultDevice } from './engine/registry.js';
import type { Device } from './storage.js';

registerCpuBackend();

/** Options of `init`. */
export interface InitOptions {
  /** 'auto' (default) takes WebGPU when an adapter exists, otherwise the CPU with a one-line notice. */
  backend?: Device | 'auto';
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
 * await lr.init({ backend: 'cpu' }); // always available
 */
export async function init(options: InitOptions = {}): Promise<InitResult> {
  const wanted = options.backend ?? 'auto';
  if (wanted !== 'cpu' && wanted !== 'webgpu' && wanted !== 'auto') {
    throw new Error(`init: unknown backend '${String(wanted)}' (expected 'cpu', 'webgpu' or 'auto')`);
  }
  if (wanted === 'cpu') {
    setDefaultDevice('cpu');
    return { device: 'cpu', description: getBackend('cpu').description };
  }
  if (!hasBackend('webgpu')) {
    const { createWebGPUBackend } = await import('./backends/webgpu/index.js');
    try {
      await createWebGPUBackend(options.webgpu ?? {});
    } catch (e) {
      if (wanted === 'webgpu') throw e;
      const notice = `lowrank: WebGPU unavailable (${(e as Error).message}); using the CPU backend`;
      (options.onNotice ?? console.warn)(notice);
      setDefaultDevice('cpu');
      return { device: 'cpu', description: getBackend('cpu').description };
    }
  }
  setDefaultDevice('webgpu');
  return { device: 'webgpu', description: getBackend('webgpu').description };
}

export { getDefaultDevice };
