import { features, ModuleBuilder } from './assembler.js';
import { emitAttentionDriver } from './attention-driver.js';
import { defaultGemm, emitGemm, type GemmConfig, gemmScratchBytes } from './gemm.js';
import { WasmHeap } from './heap.js';
import { emitKernels } from './kernels.js';
import { WasmStorages } from './storage.js';

/** A kernel entry point: every argument is an i32 (an address, a stride or a count) or an f64. */
export type WasmFn = (...args: number[]) => void;

/** Per-thread scratch in the heap: gemm's packing buffers and edge tile. */
export interface ThreadScratch {
  packA: number;
  packB: number;
  tile: number;
}

/** Options of `WasmRuntime`. */
export interface WasmRuntimeOptions {
  /** The heap to use (default: a new one, shared when the engine allows). */
  heap?: WasmHeap;
  /** Gemm blocking (default `defaultGemm(fused)`). */
  gemm?: Partial<Omit<GemmConfig, 'fused'>>;
  /** Use relaxed-SIMD FMA where the engine has it (default true). */
  fma?: boolean;
}

/**
 * Builds the kernel module's bytes for a heap (the module imports the heap's memory, shared or
 * not, with its maximum).
 *
 * @example
 * const bytes = kernelModuleBytes(heap, { ...defaultGemm(false), fused: false });
 * WebAssembly.validate(bytes); // true
 */
export function kernelModuleBytes(heap: WasmHeap, gemm: GemmConfig): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder({
    initial: 1,
    maximum: heap.shared ? heap.maximumPages : undefined,
    shared: heap.shared,
  });
  emitGemm(m, gemm);
  emitKernels(m);
  emitAttentionDriver(m); // calls the gemm and the attention's row kernels
  return m.encode();
}

/**
 * The Wasm side of the CPU backend: a heap, storages in it, and the kernel module instantiated
 * over it. Worker threads (see `pool.ts`) instantiate the same module over the same memory.
 */
export class WasmRuntime {
  readonly heap: WasmHeap;
  readonly storages: WasmStorages;
  readonly gemm: GemmConfig;
  readonly module: WebAssembly.Module;
  readonly exports: Record<string, WasmFn>;
  /** Scratch of the calling thread (thread 0); workers get theirs from `scratchFor`. */
  readonly scratch: ThreadScratch;
  private readonly scratches: ThreadScratch[] = [];

  /**
   * Compiles the kernels synchronously (fine in Node and in workers; a browser's main thread
   * should use `WasmRuntime.create`, which compiles asynchronously).
   *
   * @example
   * const rt = new WasmRuntime();
   * rt.exports.gemm; // (a, bsa, rsa, csa, b, …) => void
   */
  constructor(options: WasmRuntimeOptions = {}, module?: WebAssembly.Module) {
    this.heap = options.heap ?? new WasmHeap();
    this.storages = new WasmStorages(this.heap);
    this.gemm = gemmConfig(options);
    this.module = module ?? new WebAssembly.Module(kernelModuleBytes(this.heap, this.gemm));
    const instance = new WebAssembly.Instance(this.module, { env: { memory: this.heap.memory } });
    this.exports = instance.exports as unknown as Record<string, WasmFn>;
    this.scratch = this.scratchFor(0);
  }

  /**
   * Compiles the kernels asynchronously, then builds the runtime.
   *
   * @example
   * const rt = await WasmRuntime.create({ gemm: { mr: 4 } });
   */
  static async create(options: WasmRuntimeOptions = {}): Promise<WasmRuntime> {
    const heap = options.heap ?? new WasmHeap();
    const module = await WebAssembly.compile(kernelModuleBytes(heap, gemmConfig(options)));
    return new WasmRuntime({ ...options, heap }, module);
  }

  /**
   * Scratch buffers of thread `i` (allocated on first use, kept for the runtime's life).
   *
   * @example
   * rt.scratchFor(1).packA; // address of thread 1's packed-A buffer
   */
  scratchFor(i: number): ThreadScratch {
    let s = this.scratches[i];
    if (!s) {
      const bytes = gemmScratchBytes(this.gemm);
      s = {
        packA: this.heap.alloc(bytes.a),
        packB: this.heap.alloc(bytes.b),
        tile: this.heap.alloc(bytes.tile),
      };
      this.scratches[i] = s;
    }
    return s;
  }
}

function gemmConfig(options: WasmRuntimeOptions): GemmConfig {
  const fused = (options.fma ?? true) && features().relaxedSimd;
  return { ...defaultGemm(fused), ...options.gemm, fused };
}
