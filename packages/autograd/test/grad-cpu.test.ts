import '@lowrank/autograd';
import { describe } from 'vitest';
import { gradSuite } from './grad-suite.js';

describe('gradcheck of every rule on cpu', () => {
  gradSuite('cpu', { numRuns: 25 });
});
