/**
 * The tensor op suite, written once and run per device: `opSuite('cpu', CPU_TOLERANCES)` in
 * cpu.test.ts, `opSuite('webgpu', …)` by the WebGPU tests. Every op is compared with the
 * nested-loop reference in reference.ts over random shapes (0- and 1-sized dims included),
 * broadcasting and non-contiguous inputs, plus algebraic properties.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Device } from '../../src/index.js';
import * as lr from '../../src/index.js';
import { creationSuite } from './creation.js';
import { elementwiseSuite } from './elementwise.js';
import { fusionSuite } from './fusion.js';
import type { Tol } from './gen.js';
import { indexingSuite } from './indexing.js';
import { matmulSuite } from './matmul.js';
import { memorySuite } from './memory.js';
import { optimSuite } from './optim.js';
import { reduceSuite } from './reduce.js';
import { viewsSuite } from './views.js';

/**
 * Per-op tolerances (|got − want| ≤ atol + rtol·|want|, want computed in float64):
 * - `exact`: arithmetic on the suite's inputs (multiples of 1/8 in [-4, 4]) is exact in float32,
 *   so add/sub/mul/neg/abs/relu/maximum/…/cast/views/indexing must match bit for bit.
 * - `elementwise`: div, pow, sqrt, exp, log, tanh, sigmoid, silu, gelu(tanh): one float32
 *   rounding of the result plus the device's transcendental error.
 * - `gelu`: gelu with the exact erf (the backend approximates erf).
 * - `reduce`: sums/means/var/logsumexp/softmax of ≤ 256 float32 values.
 * - `matmul`: dot products of length ≤ 300 of values in (−1, 1) or [−4, 4].
 */
export interface Tolerances {
  exact: Tol;
  elementwise: Tol;
  gelu: Tol;
  reduce: Tol;
  matmul: Tol;
}

/** The CPU computes in float64 and rounds once: every tolerance is a few float32 ulps. */
export const CPU_TOLERANCES: Tolerances = {
  exact: { rtol: 0, atol: 0 },
  elementwise: { rtol: 2e-7, atol: 1e-7 },
  gelu: { rtol: 1e-6, atol: 5e-7 },
  reduce: { rtol: 1e-6, atol: 1e-6 },
  matmul: { rtol: 1e-5, atol: 1e-5 },
};

export interface SuiteOptions {
  /** fast-check runs per property (default 40). */
  numRuns?: number;
}

export interface SuiteContext {
  device: Device;
  tol: Tolerances;
  numRuns: number;
}

export function opSuite(device: Device, tolerances: Tolerances, options: SuiteOptions = {}): void {
  const ctx: SuiteContext = { device, tol: tolerances, numRuns: options.numRuns ?? 40 };
  describe(`tensor ops on '${device}'`, () => {
    let before = 0;
    let previousDefault: Device = 'cpu';
    beforeAll(() => {
      previousDefault = lr.getDefaultDevice();
      lr.setDefaultDevice(device);
      before = lr.memory().numTensors;
    });
    afterAll(() => {
      lr.setDefaultDevice(previousDefault);
    });

    it('registers every kernel', () => {
      expect(lr.missingKernels(device, lr.KERNEL_NAMES)).toEqual([]);
    });

    creationSuite(ctx);
    viewsSuite(ctx);
    elementwiseSuite(ctx);
    fusionSuite(ctx);
    reduceSuite(ctx);
    matmulSuite(ctx);
    indexingSuite(ctx);
    memorySuite(ctx);
    optimSuite(ctx);

    it('leaves no live tensors behind (every property disposed what it made)', () => {
      expect(lr.memory().numTensors).toBe(before);
    });
  });
}
