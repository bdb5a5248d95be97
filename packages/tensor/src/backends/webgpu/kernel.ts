import type { KernelName, KernelTable } from '../../backend.js';
import type { WebGPUContext } from './context.js';

/**
 * A WebGPU kernel: the KernelTable entry's signature with the context it runs on as its first
 * argument. The backend binds every kernel to its context when it registers them (index.ts), so
 * no kernel reaches for a module-level singleton.
 */
export type GpuKernel<K extends KernelName> = (
  c: WebGPUContext,
  ...args: Parameters<KernelTable[K]>
) => ReturnType<KernelTable[K]>;
