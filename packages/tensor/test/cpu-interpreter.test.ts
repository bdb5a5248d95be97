import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useCpuInterpreter } from '../src/backends/cpu/elementwise.js';
import { CPU_TOLERANCES, opSuite } from './suite/index.js';
import { serveCpuWithTsKernels } from './ts-kernels.js';

// The whole op suite on the CPU's tree interpreter: the fallback where generated code is not
// allowed (a CSP without 'unsafe-eval') and the reference the generated loops must agree with.
// It lives in the TypeScript elementwise kernel, so the suite runs on 'cpu-ts': on 'cpu' the
// Wasm elementwise kernel would compute nearly every program and the interpreter almost none.
const ts = await serveCpuWithTsKernels();
beforeAll(() => useCpuInterpreter(true));
afterAll(() => useCpuInterpreter(false));
opSuite('cpu', CPU_TOLERANCES);

describe('the suite ran on the interpreter', () => {
  it('the TypeScript elementwise kernel (forced to interpret) served every program', () => {
    expect(ts.notServing()).toEqual([]);
    expect(ts.calls.elementwise).toBeGreaterThan(1000);
  });
});
