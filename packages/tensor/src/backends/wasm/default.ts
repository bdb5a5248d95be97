import { registerCpuBackend } from '../cpu/index.js';
import { registerWasmKernels, registerWasmKernelsSync, type WasmCpu } from './index.js';
import type { WasmRuntime } from './runtime.js';

/**
 * Which kernels serve device 'cpu': the Wasm ones (the default) or the TypeScript ones
 * ('cpu-ts': the reference, and the fallback where Wasm SIMD is missing). One Wasm runtime (heap
 * and compiled kernels) serves the process; changing the thread count restarts only the workers,
 * so tensors made before stay where they are.
 */

let runtime: WasmRuntime | null = null;
let active: WasmCpu | null = null;
/** What the active kernels were asked for: a thread count, 'cores', or 'load' (one, no workers). */
let activeKey: number | 'cores' | 'load' | null = null;

/**
 * At load, in Node: the Wasm kernels on the calling thread (workers start with `init`), unless
 * `LOWRANK_CPU=ts` is set. Elsewhere the TypeScript kernels serve until `init()`: a browser's
 * main thread may not compile a module this large synchronously.
 *
 * @example
 * installCpuAtLoad(); // init.ts does this once
 */
export function installCpuAtLoad(): void {
  registerCpuBackend();
  const env = (globalThis as { process?: NodeProcess }).process;
  if (!env?.versions?.node || env.env?.LOWRANK_CPU === 'ts') return;
  enableRelaxedSimd(env);
  active = registerWasmKernelsSync();
  if (active) {
    runtime = active.runtime;
    activeKey = 'load';
  }
}

/** What this file reads of Node's `process`. */
interface NodeProcess {
  versions?: { node?: string; v8?: string };
  env?: Record<string, string | undefined>;
  getBuiltinModule?: (id: string) => unknown;
}

/**
 * Node 20's V8 (11.3) has relaxed SIMD behind `--experimental-wasm-relaxed-simd`; from V8 11.4
 * (Node 22, Chrome 114) it is on by default. Where it is off, turn the flag on before the first
 * module is compiled, so the gemm's micro-kernel gets `f32x4.relaxed_madd` (FMA, 6×8 tiles):
 * the demo's char-model step on one thread took 167–170 → 122 ms on this machine (docs/perf.md,
 * issue 16). V8 flags are process-wide, so the worker pool sees it too. `LOWRANK_RELAXED_SIMD=0`
 * leaves V8's flags alone.
 */
function enableRelaxedSimd(env: NodeProcess): void {
  if (env.env?.LOWRANK_RELAXED_SIMD === '0') return;
  const [major, minor] = (env.versions?.v8 ?? '').split('.').map(Number);
  if (!(major < 11 || (major === 11 && minor < 4))) return;
  const v8 = env.getBuiltinModule?.('node:v8') as
    | { setFlagsFromString?: (flags: string) => void }
    | undefined;
  v8?.setFlagsFromString?.('--experimental-wasm-relaxed-simd');
}

/**
 * Makes the Wasm kernels serve 'cpu' on `threads` threads (default: the number of cores; one
 * where SharedArrayBuffer or workers are missing, which the backend's description says). False
 * where the engine lacks Wasm SIMD128 (the TypeScript kernels stay).
 *
 * @example
 * await useWasmCpu(2); // lr.getBackend('cpu').description: "CPU (Wasm SIMD128, 2 threads)"
 */
export async function useWasmCpu(threads?: number): Promise<boolean> {
  const key = threads ?? 'cores';
  if (active && activeKey === key) return true;
  if (!runtime) {
    const sync = registerWasmKernelsSync();
    if (!sync) return false;
    sync.unregister();
    runtime = sync.runtime;
  }
  active?.unregister();
  active = await registerWasmKernels({ runtime, threads });
  activeKey = key;
  return true;
}

/**
 * Makes the TypeScript kernels serve 'cpu' ('cpu-ts'); tensors already in the Wasm heap stay
 * readable and free their blocks when released.
 *
 * @example
 * useTsCpu(); // lr.getBackend('cpu').description: "CPU (TypeScript)"
 */
export function useTsCpu(): void {
  active?.unregister();
  active = null;
  activeKey = null;
}
