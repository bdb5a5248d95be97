import { afterAll } from 'vitest';
import { registerWasmKernels } from '../../src/backends/wasm/index.js';
import { CPU_TOLERANCES, opSuite } from '../suite/index.js';

/**
 * The whole op suite on device 'cpu' with the Wasm kernels registered (2 threads, so the pool
 * runs where a case is big enough). Only matmul's tolerance is wider than the TypeScript CPU's:
 * the Wasm gemm accumulates in float32 (the TypeScript one in float64), like WebGPU.
 */
const wasm = await registerWasmKernels({ threads: 2 });
afterAll(() => wasm.unregister());
opSuite('cpu', { ...CPU_TOLERANCES, matmul: { rtol: 2e-5, atol: 2e-5 } });
