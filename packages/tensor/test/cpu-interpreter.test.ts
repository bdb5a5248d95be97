import { afterAll, beforeAll } from 'vitest';
import { useCpuInterpreter } from '../src/backends/cpu/elementwise.js';
import { CPU_TOLERANCES, opSuite } from './suite/index.js';

// The whole op suite on the CPU's tree interpreter: the fallback where generated code is not
// allowed (a CSP without 'unsafe-eval') and the reference the generated loops must agree with.
beforeAll(() => useCpuInterpreter(true));
afterAll(() => useCpuInterpreter(false));
opSuite('cpu', CPU_TOLERANCES);
