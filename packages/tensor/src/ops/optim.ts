import type { AdamUpdateParams } from '../backend.js';
import { hostValue, isTracing } from '../engine/capture.js';
import { prepareWrite } from '../engine/lazy.js';
import { fmtShape, OpError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { add, div, maximum, mul, sqrt, square } from './elementwise.js';
import { add_, checkInPlace, copy_, mul_ } from './inplace.js';
import { kernel } from './util.js';

/** Options of `adamUpdate_` (PyTorch 1.13's Adam/AdamW hyper-parameters for one step). */
export interface AdamUpdateOptions {
  /** Learning rate. */
  lr: number;
  /** First-moment decay β1. */
  beta1: number;
  /** Second-moment decay β2. */
  beta2: number;
  /** Added to the denominator. */
  eps: number;
  /** Weight decay: L2 added to the gradient, or decoupled (AdamW) when `decoupled`. */
  weightDecay: number;
  /** AdamW's decoupled decay `p ← p·(1 − lr·wd)` instead of Adam's L2 penalty. */
  decoupled: boolean;
  /** The step number, from 1 (for the bias corrections). */
  step: number;
  /** AMSGrad's running maximum of the second moment (updated in place); omit for plain Adam. */
  maxExpAvgSq?: Tensor | null;
}

/**
 * One Adam/AdamW step in place, PyTorch 1.13's rule: `p ← p·(1 − lr·wd)` (decoupled) or
 * `g ← g + wd·p` (L2); `m ← β1·m + (1 − β1)·g`; `v ← β2·v + (1 − β2)·g²`; with AMSGrad
 * `v̂ ← max(v̂, v)`; `p ← p − lr/(1 − β1ᵗ) · m / (√v̂/√(1 − β2ᵗ) + eps)`. `param`, `expAvg`,
 * `expAvgSq` (and `maxExpAvgSq`) are written in place; all are float32 tensors of `param`'s
 * shape on one device. `options` may be a function returning them: inside `lr.compile` it is
 * called again at every replay, so the step count and learning rate are per-call parameters
 * (the optimizers pass one). Contiguous tensors over distinct storages take one fused kernel (one pass,
 * one dispatch on WebGPU); anything else runs the same rule as unfused ops.
 *
 * @example
 * const p = lr.tensor([1, 2]);
 * const m = lr.zeros([2]);
 * const v = lr.zeros([2]);
 * lr.adamUpdate_(p, lr.tensor([0.5, -0.5]), m, v, {
 *   lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true, step: 1,
 * });
 * await p.toArray(); // ≈ [0.899, 2.098]
 */
export function adamUpdate_(
  param: Tensor,
  grad: Tensor,
  expAvg: Tensor,
  expAvgSq: Tensor,
  options: AdamUpdateOptions | (() => AdamUpdateOptions),
): Tensor {
  const op = 'adamUpdate_';
  // a function is read again at every replay of a compiled step (the step count and a scheduled
  // learning rate change per call): its scalars are per-call kernel parameters, never constants
  const read = typeof options === 'function' ? options : () => options;
  const maxSq = read().maxExpAvgSq ?? null;
  const all = maxSq ? [param, grad, expAvg, expAvgSq, maxSq] : [param, grad, expAvg, expAvgSq];
  const names = ['param', 'grad', 'expAvg', 'expAvgSq', 'maxExpAvgSq'];
  all.forEach((t, i) => {
    t.assertLive(op);
    if (t.dtype !== 'float32') throw new OpError(op, `expected float32 tensors, got ${names[i]} ${t.dtype}`);
    if (t.device !== param.device)
      throw new OpError(
        op,
        `expected tensors on one device, got '${param.device}' and '${t.device}' (${names[i]})`,
      );
    if (t.shape.length !== param.shape.length || t.shape.some((d, j) => d !== param.shape[j]))
      throw new OpError(op, `${names[i]} is ${fmtShape(t.shape)}, param is ${fmtShape(param.shape)}`);
  });
  for (const t of all) if (t !== grad) checkInPlace(op, t);
  const params = hostValue(() => adamParams(op, read()));
  if (param.size === 0) return param;
  const storages = new Set(all.map((t) => t.storage));
  if (storages.size === all.length && all.every((t) => t.isContiguous())) {
    // chains still reading the old values are computed before the step overwrites them
    for (const t of all) if (t !== grad) prepareWrite(t.storage);
    kernel(op, param, 'adamUpdate')(
      param.view_(),
      grad.view_(),
      expAvg.view_(),
      expAvgSq.view_(),
      maxSq ? maxSq.view_() : null,
      params,
    );
    return param;
  }
  // the unfused ops bake the scalars into their programs. Options given as values are constants
  // of the step anyway; a function (the optimizers': the step count changes every call) cannot be
  // honoured by a replay. A guard cannot tell either: it runs before the replay's step counts move.
  if (typeof options === 'function' && isTracing()) {
    throw new OpError(
      op,
      'a strided or aliased Adam step inside lr.compile would replay its first step count: make the ' +
        'parameter, its gradient and its moments contiguous tensors of their own storages, or step outside the compiled function',
    );
  }
  unfused(param, grad, expAvg, expAvgSq, maxSq, params);
  return param;
}

/** The kernel's scalars from the optimizer's options (float64 on the host, as PyTorch). */
function adamParams(op: string, options: AdamUpdateOptions): AdamUpdateParams {
  const { lr, beta1, beta2, eps, weightDecay, decoupled, step } = options;
  if (!(step >= 1)) throw new OpError(op, `expected a step ≥ 1, got ${step}`);
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  return {
    decay: decoupled ? 1 - lr * weightDecay : 1,
    l2: decoupled ? 0 : weightDecay,
    beta1,
    beta2,
    stepSize: lr / bc1,
    sqrtBc2: Math.sqrt(bc2),
    eps,
  };
}

/** The same step as unfused elementwise ops (strided or aliased tensors). */
function unfused(
  p: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  maxSq: Tensor | null,
  s: AdamUpdateParams,
): void {
  const temps: Tensor[] = [];
  const t = (x: Tensor): Tensor => {
    temps.push(x);
    return x;
  };
  if (s.decay !== 1) mul_(p, s.decay);
  const g = s.l2 !== 0 ? t(add(grad, t(mul(p, s.l2)))) : grad;
  add_(mul_(m, s.beta1), g, 1 - s.beta1);
  add_(mul_(v, s.beta2), t(square(g)), 1 - s.beta2);
  let vv = v;
  if (maxSq) {
    copy_(maxSq, t(maximum(maxSq, v)));
    vv = maxSq;
  }
  const denom = t(add(t(div(t(sqrt(vv)), s.sqrtBc2)), s.eps));
  add_(p, t(div(m, denom)), -s.stepSize);
  for (const x of temps) x.dispose();
}
