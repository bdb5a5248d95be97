import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Tensor } from '../../src/index.js';
import * as lr from '../../src/index.js';
import { arbShape, assertClose, Bag, inputOf, type Kind, type Layout, read, type Tol } from './gen.js';
import type { SuiteContext } from './index.js';

/**
 * The fused Adam/AdamW step (`adamUpdate_`) against the same rule composed of unfused tensor ops
 * (PyTorch 1.13's `_single_tensor_adam`/`_single_tensor_adamw`), over random shapes, layouts
 * (contiguous ones take the fused kernel, strided ones the fallback), hyper-parameters, AMSGrad
 * and several steps. The fused kernel skips the float32 roundings of the intermediates, so the
 * results agree to a few float32 ulps of the update rather than bit for bit.
 */
const TOL: Tol = { rtol: 1e-5, atol: 2e-6 };

interface Hyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;
  amsgrad: boolean;
}

/** One step of the unfused rule, in place on p, m, v (and vmax). */
function unfusedStep(
  p: Tensor,
  g0: Tensor,
  m: Tensor,
  v: Tensor,
  vmax: Tensor | null,
  h: Hyper,
  step: number,
): void {
  lr.tidy(() => {
    let g = g0;
    if (h.decoupled) p.mul_(1 - h.lr * h.weightDecay);
    else if (h.weightDecay !== 0) g = g0.add(p.mul(h.weightDecay));
    m.mul_(h.beta1).add_(g, 1 - h.beta1);
    v.mul_(h.beta2).add_(g.square(), 1 - h.beta2);
    const bc1 = 1 - h.beta1 ** step;
    const bc2 = 1 - h.beta2 ** step;
    let vv = v;
    if (vmax) {
      vmax.copy_(vmax.maximum(v));
      vv = vmax;
    }
    const denom = vv.sqrt().div(Math.sqrt(bc2)).add(h.eps);
    p.add_(m.div(denom), -h.lr / bc1);
  });
}

const arbHyper: fc.Arbitrary<Hyper> = fc.record({
  lr: fc.constantFrom(1e-3, 0.01, 0.1),
  beta1: fc.constantFrom(0, 0.8, 0.9),
  beta2: fc.constantFrom(0.95, 0.999),
  eps: fc.constantFrom(1e-8, 1e-6, 1e-3),
  weightDecay: fc.constantFrom(0, 0.01, 0.5),
  decoupled: fc.boolean(),
  amsgrad: fc.boolean(),
});

const WRITTEN: Layout[] = ['contiguous', 'permuted', 'strided', 'offset'];

export function optimSuite(ctx: SuiteContext): void {
  describe('adamUpdate_ (fused Adam/AdamW)', () => {
    it('matches the unfused composition (all layouts, AMSGrad, several steps)', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbShape(0, 3, 5),
          arbHyper,
          fc.integer({ min: 1, max: 3 }),
          fc.boolean(),
          fc.array(fc.constantFrom(...WRITTEN), { minLength: 5, maxLength: 5 }),
          fc.integer({ min: 0, max: 0x7ffffff }),
          async (shape, h, steps, contiguous, layouts, seed) => {
            const bag = new Bag();
            try {
              const lay = (i: number): Layout => (contiguous ? 'contiguous' : layouts[i]);
              const make = (kind: Kind, layout: Layout, s: number) =>
                bag.add(inputOf(shape, kind, layout, s).make(ctx.device));
              // two copies of the state: one for the fused op, one (contiguous) for the reference
              const state = (kinds: Kind[]) =>
                kinds.map((k, i) => [make(k, lay(i), seed + i), make(k, 'contiguous', seed + i)]);
              const [[p, pr], [m, mr], [v, vr], [x, xr]] = state(['float', 'float', 'positive', 'positive']);
              const vmax = h.amsgrad ? x : null;
              const vmaxRef = h.amsgrad ? xr : null;
              for (let step = 1; step <= steps; step++) {
                const g = make('unit', step === 1 ? lay(4) : 'contiguous', seed + 17 * step);
                const before = lr.webgpuStats()?.dispatches ?? 0;
                lr.adamUpdate_(p, g, m, v, { ...h, step, maxExpAvgSq: vmax });
                if (ctx.device === 'webgpu' && contiguous && p.size > 0) {
                  expect((lr.webgpuStats()?.dispatches ?? 0) - before).toBe(1);
                }
                unfusedStep(pr, g, mr, vr, vmaxRef, h, step);
              }
              const what = `${JSON.stringify(h)} steps ${steps} shape [${shape}]`;
              assertClose(await read(m), await read(mr), TOL, `expAvg ${what}`);
              assertClose(await read(v), await read(vr), TOL, `expAvgSq ${what}`);
              if (vmax && vmaxRef) assertClose(await read(vmax), await read(vmaxRef), TOL, `max ${what}`);
              assertClose(await read(p), await read(pr), TOL, `param ${what}`);
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns: ctx.numRuns },
      );
    });

    it('rejects mismatched shapes, dtypes and a step below 1', () => {
      const p = lr.zeros([2, 3]);
      const m = lr.zeros([2, 3]);
      const v = lr.zeros([2, 3]);
      const bad = lr.zeros([3, 2]);
      const ints = lr.zeros([2, 3], { dtype: 'int32' });
      const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: true };
      expect(() => lr.adamUpdate_(p, bad, m, v, { ...h, step: 1 })).toThrow(/adamUpdate_: grad is \[3, ?2\]/);
      expect(() => lr.adamUpdate_(p, ints, m, v, { ...h, step: 1 })).toThrow(/float32/);
      expect(() => lr.adamUpdate_(p, m, m, v, { ...h, step: 0 })).toThrow(/step ≥ 1/);
      lr.dispose(p, m, v, bad, ints);
    });
  });
}
