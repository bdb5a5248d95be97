import { cpuKernels } from '../src/backends/cpu/index.js';
import * as lr from '../src/index.js';

/**
 * Counts CPU kernel calls by kernel name while `fn` runs (each registered kernel is wrapped, and
 * the TypeScript kernels are registered again afterwards): how tests assert what fused.
 *
 * @example
 * countKernels(() => lr.realize(x.add(1).mul(2).storage)); // { elementwise: 1 }
 */
export function countKernels(fn: () => void): Record<string, number> {
  const counts: Record<string, number> = {};
  const wrapped: Record<string, unknown> = {};
  for (const [name, k] of Object.entries(cpuKernels)) {
    wrapped[name] = (...args: unknown[]) => {
      counts[name] = (counts[name] ?? 0) + 1;
      return (k as (...a: unknown[]) => unknown)(...args);
    };
  }
  lr.registerKernels('cpu', wrapped as Partial<lr.KernelTable>);
  try {
    fn();
  } finally {
    lr.registerKernels('cpu', cpuKernels);
  }
  return counts;
}
