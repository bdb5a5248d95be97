import { cpuKernels } from '../src/backends/cpu/index.js';
import { getKernel } from '../src/engine/registry.js';
import * as lr from '../src/index.js';

/**
 * Counts CPU kernel calls by kernel name while `fn` runs: each kernel registered now (the Wasm
 * ones under the `cpu` default, the TypeScript ones under `cpu-ts`) is wrapped, and exactly those
 * are registered again afterwards, so later tests in the file keep running what they ran before.
 * How tests assert what fused.
 *
 * @example
 * countKernels(() => lr.realize(x.add(1).mul(2).storage)); // { elementwise: 1 }
 */
export function countKernels(fn: () => void): Record<string, number> {
  const counts: Record<string, number> = {};
  const current: Record<string, unknown> = {};
  const wrapped: Record<string, unknown> = {};
  for (const name of Object.keys(cpuKernels) as lr.KernelName[]) {
    const k = getKernel('countKernels', 'cpu', name) as (...a: unknown[]) => unknown;
    current[name] = k;
    wrapped[name] = (...args: unknown[]) => {
      counts[name] = (counts[name] ?? 0) + 1;
      return k(...args);
    };
  }
  lr.registerKernels('cpu', wrapped as Partial<lr.KernelTable>);
  try {
    fn();
  } finally {
    lr.registerKernels('cpu', current as Partial<lr.KernelTable>);
  }
  return counts;
}
