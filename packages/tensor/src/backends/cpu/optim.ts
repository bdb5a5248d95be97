import type { KernelTable } from '../../backend.js';
import { sizeOf } from '../../shape.js';

/**
 * Fused Adam/AdamW step: one pass over the contiguous float32 storages, float64 arithmetic per
 * element. The moments are rounded to float32 as they are stored and the step reads the stored
 * (rounded) values, as the unfused ops (and PyTorch) do.
 */
export const adamUpdate: KernelTable['adamUpdate'] = (param, grad, expAvg, expAvgSq, maxExpAvgSq, s) => {
  const n = sizeOf(param.shape);
  const p = param.storage.handle as Float32Array;
  const g = grad.storage.handle as Float32Array;
  const m = expAvg.storage.handle as Float32Array;
  const v = expAvgSq.storage.handle as Float32Array;
  const po = param.offset;
  const go = grad.offset;
  const mo = expAvg.offset;
  const vo = expAvgSq.offset;
  const { decay, l2, beta1, beta2, stepSize, sqrtBc2, eps } = s;
  const c1 = 1 - beta1;
  const c2 = 1 - beta2;
  if (maxExpAvgSq) {
    const h = maxExpAvgSq.storage.handle as Float32Array;
    const ho = maxExpAvgSq.offset;
    for (let i = 0; i < n; i++) {
      const pi = Math.fround(p[po + i] * decay);
      const gi = g[go + i] + l2 * pi;
      const mi = Math.fround(beta1 * m[mo + i] + c1 * gi);
      const vi = Math.fround(beta2 * v[vo + i] + c2 * gi * gi);
      const hi = Math.max(h[ho + i], vi);
      m[mo + i] = mi;
      v[vo + i] = vi;
      h[ho + i] = hi;
      p[po + i] = pi - (stepSize * mi) / (Math.sqrt(hi) / sqrtBc2 + eps);
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const pi = Math.fround(p[po + i] * decay);
    const gi = g[go + i] + l2 * pi;
    const mi = Math.fround(beta1 * m[mo + i] + c1 * gi);
    const vi = Math.fround(beta2 * v[vo + i] + c2 * gi * gi);
    m[mo + i] = mi;
    v[vo + i] = vi;
    p[po + i] = pi - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
  }
};
