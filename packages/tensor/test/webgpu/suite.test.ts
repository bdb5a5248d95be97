import { afterAll, describe, it } from 'vitest';
import * as lr from '../../src/index.js';
import { opSuite, type Tolerances } from '../suite/index.js';
import { initWebGPU } from './helpers.js';

/**
 * The same property suite as cpu.test.ts, on WebGPU. WGSL's transcendental functions are less
 * exact than the CPU's float64 ones (Vulkan allows several ulps for exp/log/tanh and an absolute
 * error for sin/cos), and the GPU sums in a different order (tree reductions), so tolerances are
 * wider than the CPU's; arithmetic on the suite's exactly-representable inputs stays exact.
 */
const WEBGPU_TOLERANCES: Tolerances = {
  exact: { rtol: 0, atol: 0 },
  elementwise: { rtol: 2e-5, atol: 2e-6 },
  gelu: { rtol: 1e-5, atol: 2e-6 },
  reduce: { rtol: 2e-5, atol: 2e-5 },
  matmul: { rtol: 2e-5, atol: 2e-5 },
};

const skip = await initWebGPU();
afterAll(() => lr.destroyWebGPU());

if (skip) describe.skip(`tensor ops on 'webgpu' (${skip})`, () => it('skipped', () => {}));
else opSuite('webgpu', WEBGPU_TOLERANCES, { numRuns: 8 });
