import type { KernelName, KernelTable } from '../src/backend.js';
import { cpuKernels } from '../src/backends/cpu/index.js';
import { getKernel } from '../src/engine/registry.js';
import * as lr from '../src/index.js';

/** What `serveCpuWithTsKernels` set up: per-kernel call counts, and a check that it still holds. */
export interface TsKernelServing {
  /** Calls of each TypeScript kernel since it was set up, by kernel name. */
  readonly calls: Readonly<Record<string, number>>;
  /**
   * The kernels of device 'cpu' that are not the counting TypeScript ones now (empty while the
   * TypeScript kernels serve every kernel name), plus 'backend' when the backend's description
   * is not "CPU (TypeScript)".
   */
  notServing(): string[];
  /** The kernel names called at least once, in `KERNEL_NAMES` order. */
  ran(): string[];
}

/**
 * Makes device 'cpu' run the TypeScript kernels ('cpu-ts', the reference the Wasm kernels are
 * tested against) for the rest of the test file, each wrapped to count its calls: since the Wasm
 * kernels serve 'cpu' from load, a suite meant for the TypeScript kernels asserts with these
 * counts that they, and not the Wasm kernels, computed its results.
 *
 * @example
 * const ts = await serveCpuWithTsKernels();
 * lr.ones([2]).add(1);
 * ts.calls.elementwise; // 1 (once realized)
 * ts.notServing(); // []
 */
export async function serveCpuWithTsKernels(): Promise<TsKernelServing> {
  await lr.init({ backend: 'cpu-ts' });
  const calls: Record<string, number> = {};
  const wrapped: Partial<Record<KernelName, unknown>> = {};
  for (const [name, kernel] of Object.entries(cpuKernels) as [KernelName, (...a: unknown[]) => unknown][]) {
    calls[name] = 0;
    wrapped[name] = (...args: unknown[]) => {
      calls[name]++;
      return kernel(...args);
    };
  }
  lr.registerKernels('cpu', wrapped as Partial<KernelTable>);
  return {
    calls,
    notServing() {
      const names = lr.KERNEL_NAMES.filter((name) => getKernel('check', 'cpu', name) !== wrapped[name]);
      return lr.getBackend('cpu').description === 'CPU (TypeScript)' ? names : [...names, 'backend'];
    },
    ran: () => lr.KERNEL_NAMES.filter((name) => (calls[name] ?? 0) > 0),
  };
}
