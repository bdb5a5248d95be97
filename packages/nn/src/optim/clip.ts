import { keep, OpError, stack, type Tensor, tidy, zeros } from '@lowrank/tensor';
import { noGrad } from '../internal.js';

/**
 * Scales the gradients of `params` in place so that their global norm is at most `maxNorm`
 * (PyTorch's `clip_grad_norm_`: coefficient min(1, maxNorm / (norm + 1e-6))). Returns the norm
 * before clipping as a 0-d tensor (no read-back: call `await norm.item()` to see it).
 * `normType` may be any p ≥ 1 or `Infinity`.
 *
 * @example
 * loss.backward();
 * const norm = clipGradNorm(model.parameters(), 1.0); // gradients rescaled to a global norm ≤ 1
 * opt.step();
 */
export function clipGradNorm(
  params: Iterable<Tensor>,
  maxNorm: number,
  options: { normType?: number } = {},
): Tensor {
  const normType = options.normType ?? 2;
  if (!(maxNorm >= 0)) throw new OpError('clipGradNorm', `maxNorm must be ≥ 0, got ${maxNorm}`);
  if (!(normType >= 1))
    throw new OpError('clipGradNorm', `normType must be ≥ 1 or Infinity, got ${normType}`);
  const grads = [...params].flatMap((p) => (p.grad ? [p.grad] : []));
  if (grads.length === 0) return zeros([]);
  return noGrad(() => {
    const total = keep(
      tidy(() => {
        if (normType === Number.POSITIVE_INFINITY) return stack(grads.map((g) => g.abs().max())).max();
        if (normType === 2)
          return stack(grads.map((g) => g.square().sum()))
            .sum()
            .sqrt();
        return stack(grads.map((g) => g.abs().pow(normType).sum()))
          .sum()
          .pow(1 / normType);
      }),
    );
    tidy(() => {
      const coef = total.add(1e-6).reciprocal().mul(maxNorm).clamp(null, 1);
      for (const g of grads) g.mul_(coef);
    });
    return total;
  });
}
