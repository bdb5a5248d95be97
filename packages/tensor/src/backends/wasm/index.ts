import type { Backend } from '../../backend.js';
import type { DType, TypedArray } from '../../dtype.js';
import { registerBackend, registerKernels } from '../../engine.js';
import type { Storage } from '../../storage.js';
import { cpuBackend, cpuKernels } from '../cpu/index.js';
import { setCpuArrayAllocator } from '../cpu/storage.js';
import { features } from './assembler.js';
import { WasmHeap } from './heap.js';
import { type Executor, serialExecutor } from './matmul.js';
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
  /** A runtime to reuse (its heap, storages and compiled kernels); default: a new one. */
  runtime?: WasmRuntime;
}

/** What `registerWasmKernels` set up. */
export interface WasmCpu {
  readonly runtime: WasmRuntime;
  /** Runs the kernels: the worker pool (or the calling thread alone). */
  readonly pool: Executor & { terminate(): void };
  /** The 'cpu' backend it registered: uploads go to the Wasm heap, releases free heap blocks. */
  readonly backend: Backend;
  /**
   * A zero-filled counted 'cpu' storage of `size` elements in the heap. The TypeScript kernels
   * allocate their outputs the same way while these kernels are registered (over a shared
   * memory: `setCpuArrayAllocator`), so every CPU tensor lives in the heap and no Wasm kernel
   * adopts (copies) an operand, except outputs of kernels that allocate plain typed arrays.
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
 * Registers the Wasm kernels for device 'cpu' (elementwise, matmul with its epilogue and LoRA
 * forms, reduce, softmax, norm and its backward, crossEntropyRows, attention and its backward,
 * adamUpdate, gather, indexSelect, scatterAdd, indexAdd: table.ts), and a 'cpu' backend whose
 * uploads live in the Wasm heap, so those kernels read tensors with no copy. The others
 * (normParamGrad, quantMatmul, quantize, dequantize) and the layouts a Wasm kernel does not take
 * stay the TypeScript ones (they read heap storages like any typed array). Workers start here;
 * kernels stay single-threaded where threads are unavailable (a page that is not cross-origin
 * isolated), which the backend's description says.
 *
 * @example
 * const wasm = await registerWasmKernels({ threads: 2 });
 * lr.getBackend('cpu').description; // "CPU (Wasm SIMD128, 2 threads)"
 * lr.randn([512, 512]).matmul(lr.randn([512, 512])); // the Wasm gemm on 2 threads
 * wasm.unregister(); // back to the TypeScript kernels
 */
export async function registerWasmKernels(options: WasmKernelOptions = {}): Promise<WasmCpu> {
  const runtime =
    options.runtime ??
    (await WasmRuntime.create({
      heap: new WasmHeap({ initialBytes: options.initialBytes }),
      fma: options.fma,
    }));
  const wanted = options.threads ?? (await coreCount());
  const pool = await WorkerPool.create(runtime, wanted);
  const threads =
    pool.threads > 1 || wanted <= 1
      ? `${pool.threads} thread${pool.threads > 1 ? 's' : ''}`
      : `1 thread: ${threadsAvailable(runtime) ? 'no workers started' : 'no SharedArrayBuffer (the page is not cross-origin isolated)'}`;
  return install(runtime, pool, threads);
}

/**
 * `registerWasmKernels` on the calling thread alone, compiled synchronously: what the engine
 * does when it loads in Node (a browser's main thread may not compile a module this large
 * synchronously: there `init()` registers the kernels). Null where the engine lacks SIMD128.
 *
 * @example
 * const wasm = registerWasmKernelsSync(); // "CPU (Wasm SIMD128, 1 thread)"
 */
export function registerWasmKernelsSync(options: Omit<WasmKernelOptions, 'threads'> = {}): WasmCpu | null {
  if (!features().simd) return null;
  const runtime =
    options.runtime ??
    new WasmRuntime({ heap: new WasmHeap({ initialBytes: options.initialBytes }), fma: options.fma });
  return install(runtime, { ...serialExecutor(runtime), terminate() {} }, '1 thread');
}

function install(runtime: WasmRuntime, pool: Executor & { terminate(): void }, threads: string): WasmCpu {
  const simd = runtime.gemm.fused ? 'SIMD128 + relaxed FMA' : 'SIMD128';
  const release = (storage: Storage) => runtime.storages.release(storage);
  const backend: Backend = {
    ...cpuBackend,
    description: `CPU (Wasm ${simd}, ${threads})`,
    maxStorageBytes: 2 ** 32 - 1,
    upload: (data, dtype) => runtime.storages.upload(data, dtype),
    release,
    reserve: (bytes) => runtime.storages.reserve(bytes),
  };
  registerBackend(backend);
  registerKernels('cpu', wasmKernelTable(runtime, pool));
  // over a non-shared memory a grow detaches views, which only storages made here re-derive
  if (runtime.heap.shared) setCpuArrayAllocator((dtype, size) => runtime.storages.array(dtype, size));
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
      setCpuArrayAllocator(null);
      // heap storages still alive keep freeing their blocks when released
      registerBackend({ ...cpuBackend, release });
      registerKernels('cpu', cpuKernels);
      pool.terminate();
    },
  };
}
