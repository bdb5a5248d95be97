import '@lowrank/autograd';
import { noGrad, zeroGrad } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { GRAD_CASES, gradSuite } from './grad-suite.js';

/**
 * The same finite-difference suite on WebGPU (fewer runs: every evaluation reads back from the
 * GPU). Needs an adapter (lavapipe works); otherwise skipped, saying why.
 */
const unavailable = await lr
  .init({ backend: 'webgpu' })
  .then(() => null)
  .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
  .finally(() => lr.setDefaultDevice('cpu'));

if (unavailable) {
  describe('gradcheck on webgpu', () => {
    it.skip(`skipped: WebGPU unavailable (${unavailable})`, () => {});
  });
} else {
  describe('gradcheck of every rule on webgpu', () => {
    // 180 s: a fused kernel's first compile on lavapipe took up to 110 s on the loaded 2-core VM
    gradSuite('webgpu', { numRuns: 3, cases: GRAD_CASES, timeoutMs: 180_000 });

    it('forward + backward + update keeps GPU memory flat', () => {
      const device = 'webgpu';
      const w = lr.randn([8, 8], { device, requiresGrad: true });
      const x = lr.randn([4, 8], { device });
      const step = () => {
        lr.tidy(() => x.matmul(w).gelu().logSoftmax(-1).max(-1).sum().backward());
        noGrad(() => w.add_(w.grad!, -0.01));
        zeroGrad([w]);
      };
      step();
      const before = lr.memory().devices.webgpu;
      for (let i = 0; i < 50; i++) step();
      expect(lr.memory().devices.webgpu).toEqual(before);
      lr.dispose(w, x);
    });
  });
}
