import { CPU_TOLERANCES, opSuite } from './suite/index.js';

opSuite('cpu', CPU_TOLERANCES);
