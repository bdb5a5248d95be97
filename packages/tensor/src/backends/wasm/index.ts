import type { Backend } from '../../backend.js';
import type { DType, TypedArray } from '../../dtype.js';
import { registerBackend, registerKernels } from '../../engine.js';
import type { Storage } from '../../storage.js';
import { cpuBackend, cpuKernels } from '../cpu/index.js';
import { WasmHeap } from './heap.js';
import { threadsAvailable, WorkerPool } from './pool.js';
import { WasmRuntime } from './runtime.js';
import { wasmKernelTable } from './table.js';

/** Options of `registerWasmKernels`. */
export interface WasmKernelOptions {
  /** Threads that run kernels, the caller included (default: the number of cores). */
  threads?: number;
  /** Use relaxed-SIMD FMA where the engine has it (default true). */
  fma?: boolean;
  /** Initial heap size in bytes (default 16 MiB; it grows on demand up to 4 GiB). */
  initialBytes?: number;
}

/** What `registerWasmKernels` set up. */
export interface WasmCpu {
  readonly runtime: WasmRuntime;
  readonly pool: WorkerPool;
  /** The 'cpu' backend it registered: uploads go to the Wasm heap, releases free heap blocks. */
  readonly backend: Backend;
  /**
   * The allocation hook for the TypeScript kernels: a zero-filled counted 'cpu' storage of `size`
   * elements in the heap (what `typedArrayFor` + `storageOf` give today, outside it). Once
   * backends/cpu/storage.ts routes its allocations through a settable hook, every CPU tensor
   * lives in the heap and no Wasm kernel ever adopts (copies) an operand.
   */
  allocate(dtype: DType, size: number): Storage<TypedArray>;
  /** Puts the TypeScript backend and kernels back and stops the workers. */
  unregister(): void;
}

async function coreCount(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  if (nav?.hardwareConcurrency) return nav.hardwareConcurrency;
  try {
    const specifier = 'node:os';
    const os = (await import(/* @vite-ignore */ specifier)) as {
      availableParallelism?: () => number;
      cpus: () => unknown[];
    };
    return os.availableParallelism?.() ?? os.cpus().length;
  } catch {
    return 1;
  }
}

/**
 * Registers the Wasm kernels (matmul, reduce, adamUpdate, gather, indexSelect) for device 'cpu',
 * and a 'cpu' backend whose uploads live in the Wasm heap, so those kernels read tensors with no
 * copy. The other kernels stay the TypeScript ones (they read heap storages like any typed
 * array). Workers start here; kernels stay single-threaded where threads are unavailable (a page
 * that is not cross-origin isolated), which the backend's description says.
 *
 * @example
 * const wasm = await registerWasmKernels({ threads: 2 });
 * lr.getBackend('cpu').description; // "CPU (Wasm SIMD128, 2 threads)"
 * lr.randn([512, 512]).matmul(lr.randn([512, 512])); // the Wasm gemm on 2 threads
 * wasm.unregister(); // back to the TypeScript kernels
 */
export async function registerWasmKernels(options: WasmKernelOptions = {}): Promise<WasmCpu> {
  const heap = new WasmHeap({ initialBytes: options.initialBytes });
  const runtime = await WasmRuntime.create({ heap, fma: options.fma });
  const wanted = options.threads ?? (await coreCount());
  const pool = await WorkerPool.create(runtime, wanted);
  const simd = runtime.gemm.fused ? 'SIMD128 + relaxed FMA' : 'SIMD128';
  const threads =
    pool.threads > 1 || wanted <= 1
      ? `${pool.threads} thread${pool.threads > 1 ? 's' : ''}`
      : `1 thread: ${threadsAvailable(runtime) ? 'no workers started' : 'no SharedArrayBuffer (the page is not cross-origin isolated)'}`;
  const backend: Backend = {
    ...cpuBackend,
    description: `CPU (Wasm ${simd}, ${threads})`,
    maxStorageBytes: 2 ** 32 - 1,
    upload: (data, dtype) => runtime.storages.upload(data, dtype),
    allocate: (dtype, size) => runtime.storages.allocate(dtype, size),
    release: (storage) => runtime.storages.release(storage),
  };
  registerBackend(backend);
  registerKernels('cpu', wasmKernelTable(runtime, pool));
  return {
    runtime,
    pool,
    backend,
    allocate(dtype, size) {
      const s = runtime.storages.allocate(dtype, size);
      s.handle.fill(0);
      return s;
    },
    unregister() {
      // heap storages still alive keep freeing their blocks when released
      registerBackend({ ...cpuBackend, release: (storage) => runtime.storages.release(storage) });
      registerKernels('cpu', cpuKernels);
      pool.terminate();
    },
  };
}
