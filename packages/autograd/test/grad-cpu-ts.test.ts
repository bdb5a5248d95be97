import '@lowrank/autograd';
import { KERNEL_NAMES } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { serveCpuWithTsKernels } from '../../tensor/test/ts-kernels.js';
import { gradSuite } from './grad-suite.js';

// Every gradient rule on 'cpu-ts': the TypeScript kernels, the reference the Wasm kernels (which
// serve 'cpu' from load, grad-cpu.test.ts) are tested against.
const ts = await serveCpuWithTsKernels();

describe('gradcheck of every rule on cpu-ts (the TypeScript kernels)', () => {
  gradSuite('cpu', { numRuns: 25 });
});

describe("the gradient suite ran on the TypeScript kernels ('cpu-ts')", () => {
  it('the fused kernels the Wasm backend also has were called, and the TypeScript kernels still serve', () => {
    expect(ts.notServing()).toEqual([]);
    // every kernel but Adam and quantize/dequantize, which have no gradient rule (their own test
    // files cover them)
    const untouched = ['adamUpdate', 'quantize', 'dequantize'];
    expect(ts.ran()).toEqual(KERNEL_NAMES.filter((n) => !untouched.includes(n)));
  });
});
