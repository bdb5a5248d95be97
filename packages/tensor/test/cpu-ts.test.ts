import { describe, expect, it } from 'vitest';
import { CPU_TOLERANCES, opSuite } from './suite/index.js';
import { serveCpuWithTsKernels } from './ts-kernels.js';

// The whole op suite on 'cpu-ts': the TypeScript kernels, the reference the Wasm kernels (which
// serve 'cpu' from load, cpu.test.ts) are tested against and the fallback where Wasm is missing.
const ts = await serveCpuWithTsKernels();
opSuite('cpu', CPU_TOLERANCES);

describe("the suite ran on the TypeScript kernels ('cpu-ts')", () => {
  it('every kernel the Wasm backend also has was called, and the TypeScript kernels still serve', () => {
    expect(ts.notServing()).toEqual([]);
    // the norms, cross-entropy, attention and the LoRA/quant kernels have their own test files
    expect(ts.ran()).toEqual([
      'elementwise',
      'reduce',
      'softmax',
      'matmul',
      'gather',
      'indexSelect',
      'scatterAdd',
      'indexAdd',
      'adamUpdate',
    ]);
  });
});
