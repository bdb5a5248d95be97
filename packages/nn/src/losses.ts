import { OpError, rowCrossEntropy, stack, type Tensor, where, zerosLike } from '@lowrank/tensor';
import { composite, fmtShape } from './internal.js';

/** How a loss reduces its per-element values, as in PyTorch. */
export type LossReduction = 'mean' | 'sum' | 'none';

function reduce(op: string, loss: Tensor, reduction: LossReduction): Tensor {
  switch (reduction) {
    case 'mean':
      return loss.mean();
    case 'sum':
      return loss.sum();
    case 'none':
      return loss;
    default:
      throw new OpError(op, `reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`);
  }
}

export interface CrossEntropyOptions {
  /** Class-index targets equal to this are ignored (no loss, not counted in the mean). Default −100. */
  ignoreIndex?: number;
  /** Mixes the target with the uniform distribution: (1 − ε)·target + ε/C. Default 0. */
  labelSmoothing?: number;
  reduction?: LossReduction;
}

/**
 * Cross-entropy of logits against class indices or class probabilities, with PyTorch's
 * semantics. Logits [C], [N, C] or [N, C, d1, …] (classes in dim 1); int32 targets [], [N] or
 * [N, d1, …]; or float32 probability targets shaped like the logits. 'mean' over index targets
 * divides by the number of non-ignored targets (NaN when all are ignored, as in PyTorch).
 * Logits [N, C] with index targets (the language-modelling case) take one fused row kernel
 * (`lr.rowCrossEntropy`: logsumexp, loss and gradient in one pass); the other forms are composed
 * from logSoftmax and gather.
 *
 * @example
 * // language modelling: logits [B, T, V], targets [B, T]
 * const loss = crossEntropy(logits.reshape(-1, V), targets.reshape(-1), { ignoreIndex: -100 });
 */
export function crossEntropy(input: Tensor, target: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = options.ignoreIndex ?? -100;
  const eps = options.labelSmoothing ?? 0;
  const reduction = options.reduction ?? 'mean';
  if (!(eps >= 0 && eps <= 1))
    throw new OpError('crossEntropy', `labelSmoothing must be in [0, 1], got ${eps}`);
  if (input.dtype !== 'float32' || input.rank < 1) {
    throw new OpError(
      'crossEntropy',
      `expected float32 logits [C] or [N, C, ...], got ${input.dtype} ${fmtShape(input.shape)}`,
    );
  }
  const c = input.shape[input.rank === 1 ? 0 : 1];
  const probs = target.dtype === 'float32';
  const expected = probs ? input.shape : input.rank === 1 ? [] : [input.shape[0], ...input.shape.slice(2)];
  if (
    target.dtype === 'bool' ||
    target.shape.length !== expected.length ||
    target.shape.some((d, i) => d !== expected[i])
  ) {
    throw new OpError(
      'crossEntropy',
      `targets must be int32 ${fmtShape(expected)} (class indices) or float32 ${fmtShape(input.shape)} (probabilities), got ${target.dtype} ${fmtShape(target.shape)}`,
    );
  }
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none')
    throw new OpError(
      'crossEntropy',
      `reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`,
    );
  if (!probs && input.rank === 2)
    return rowCrossEntropy(input, target, { ignoreIndex, labelSmoothing: eps, reduction });
  return composite([input], () => {
    // classes last: [N, d..., C]
    const x = input.rank > 2 ? input.permute([0, ...input.shape.slice(2).map((_, i) => i + 2), 1]) : input;
    const logp = x.logSoftmax(-1);
    if (probs) {
      let t = input.rank > 2 ? target.permute([0, ...target.shape.slice(2).map((_, i) => i + 2), 1]) : target;
      if (eps > 0) t = t.mul(1 - eps).add(eps / c);
      return reduce('crossEntropy', logp.mul(t).sum(-1).neg(), reduction);
    }
    const valid = target.ne(ignoreIndex); // [N, d...]
    const safe = where(valid, target, 0);
    let loss = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1).neg(); // −log p[target]
    if (eps > 0)
      loss = loss.mul(1 - eps).add(
        logp
          .sum(-1)
          .neg()
          .mul(eps / c),
      );
    loss = where(valid, loss, 0);
    if (reduction === 'mean') return loss.sum().div(valid.sum());
    return reduce('crossEntropy', loss, reduction);
  });
}

/**
 * Mean squared error (PyTorch's `mse_loss`); input and target broadcast.
 *
 * @example
 * F.mseLoss(lr.tensor([1, 2]), lr.tensor([1, 4])); // 2
 * F.mseLoss(lr.tensor([1, 2]), lr.tensor([1, 4]), { reduction: 'sum' }); // 4
 */
export function mseLoss(input: Tensor, target: Tensor, options: { reduction?: LossReduction } = {}): Tensor {
  return composite([input, target], () =>
    reduce('mseLoss', input.sub(target).square(), options.reduction ?? 'mean'),
  );
}

/** Alias of `mseLoss`. */
export const mse = mseLoss;

export interface BceWithLogitsOptions {
  reduction?: LossReduction;
  /** Rescales each element's loss (broadcast to the input). */
  weight?: Tensor | null;
  /** Weight of positive examples, per class (broadcast along the last dim). */
  posWeight?: Tensor | null;
}

/**
 * Binary cross-entropy on logits, computed stably (PyTorch's
 * `binary_cross_entropy_with_logits`): (1 − y)·x + (1 + (pw − 1)·y)·softplus(−x).
 *
 * @example
 * F.bceWithLogits(lr.tensor([0]), lr.tensor([1])); // 0.6931472 (log 2)
 */
export function bceWithLogits(input: Tensor, target: Tensor, options: BceWithLogitsOptions = {}): Tensor {
  if (input.shape.length !== target.shape.length || input.shape.some((d, i) => d !== target.shape[i])) {
    throw new OpError(
      'bceWithLogits',
      `target must have the input's shape ${fmtShape(input.shape)}, got ${fmtShape(target.shape)}`,
    );
  }
  const { weight = null, posWeight = null } = options;
  return composite([input, target, weight, posWeight], () => {
    // softplus(−x) = log(e^0 + e^−x) through logsumexp: stable, and its gradient σ(x) − 1 is
    // right everywhere (a composition with |x| and max(−x, 0) gets x = 0 wrong)
    const softplusNeg = stack([zerosLike(input), input.neg()], -1).logsumexp(-1);
    const lw = posWeight ? posWeight.sub(1).mul(target).add(1) : null;
    let loss = target
      .neg()
      .add(1)
      .mul(input)
      .add(lw ? lw.mul(softplusNeg) : softplusNeg);
    if (weight) loss = loss.mul(weight);
    return reduce('bceWithLogits', loss, options.reduction ?? 'mean');
  });
}

/** Alias of `bceWithLogits` (PyTorch's name). */
export const binaryCrossEntropyWithLogits = bceWithLogits;
