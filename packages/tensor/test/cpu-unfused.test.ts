import { afterAll, beforeAll } from 'vitest';
import * as lr from '../src/index.js';
import { CPU_TOLERANCES, opSuite } from './suite/index.js';

// The whole op suite again with fusion off (one kernel per op): both modes must pass it.
beforeAll(() => lr.setFusion(false));
afterAll(() => lr.setFusion(true));
opSuite('cpu', CPU_TOLERANCES);
