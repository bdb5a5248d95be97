import { adamUpdate_, OpError, type Tensor } from '@lowrank/tensor';
import {
  type BaseOptions,
  Optimizer,
  type ParamGroup,
  type ParamState,
  type ParamsSpec,
} from './optimizer.js';

/** Options of `Adam` and `AdamW` (PyTorch's names, camelCase). */
export interface AdamOptions extends BaseOptions {
  /** Decay rates of the first and second moment estimates (default [0.9, 0.999]). */
  betas: readonly [number, number];
  /** Added to the denominator for numerical stability (default 1e-8). */
  eps: number;
  /** Adam: L2 penalty added to the gradient; AdamW: decoupled decay of the weights. */
  weightDecay: number;
  /** Use the maximum of past second moments (AMSGrad; default false). */
  amsgrad: boolean;
}

function validate(name: string, o: AdamOptions): void {
  if (!(o.lr >= 0)) throw new OpError(name, `invalid learning rate ${o.lr}`);
  if (!(o.eps >= 0)) throw new OpError(name, `invalid eps ${o.eps}`);
  const [b1, b2] = o.betas;
  if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) throw new OpError(name, `invalid betas [${b1}, ${b2}]`);
  if (!(o.weightDecay >= 0)) throw new OpError(name, `invalid weightDecay ${o.weightDecay}`);
}

/** Adam's moment update and parameter step (PyTorch 1.13's rule), shared by Adam and AdamW. */
abstract class AdamBase extends Optimizer<AdamOptions> {
  /**
   * One Adam step for `p`: updates the moments in `state` from `grad` and moves `p` in place, in
   * one fused kernel (`adamUpdate_`). `decoupled` selects AdamW's weight decay over Adam's L2.
   */
  protected adamStep(
    p: Tensor,
    grad: Tensor,
    state: ParamState,
    g: ParamGroup<AdamOptions>,
    decoupled: boolean,
  ): void {
    const t = state.tensors;
    if (!t.expAvg) {
      t.expAvg = this.zerosLike(p);
      t.expAvgSq = this.zerosLike(p);
    }
    if (g.amsgrad && !t.maxExpAvgSq) t.maxExpAvgSq = this.zerosLike(p);
    const maxExpAvgSq = g.amsgrad ? t.maxExpAvgSq : null;
    // read when the kernel runs: a replayed step (lr.compile) sees the current lr and step count
    adamUpdate_(p, grad, t.expAvg, t.expAvgSq, () => ({
      lr: g.lr,
      beta1: g.betas[0],
      beta2: g.betas[1],
      eps: g.eps,
      weightDecay: g.weightDecay,
      decoupled,
      step: state.step,
      maxExpAvgSq,
    }));
  }
}

/**
 * Adam (Kingma & Ba) with PyTorch's defaults (betas [0.9, 0.999], eps 1e-8); `weightDecay` is L2
 * added to the gradient. State: two moments per trained parameter (three with `amsgrad`).
 */
export class Adam extends AdamBase {
  constructor(params: ParamsSpec<AdamOptions>, options: Partial<AdamOptions> = {}) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false, ...options });
  }

  protected validate(o: AdamOptions): void {
    validate('Adam', o);
  }

  protected update(p: Tensor, grad: Tensor, state: ParamState, g: ParamGroup<AdamOptions>): void {
    this.adamStep(p, grad, state, g, false);
  }
}

/**
 * AdamW (Loshchilov & Hutter): Adam with decoupled weight decay p ← p·(1 − lr·wd) before the
 * Adam step. PyTorch's defaults: lr 1e-3, weightDecay 0.01.
 *
 * @example
 * const opt = new AdamW([
 *   { params: decay, weightDecay: 0.1 },
 *   { params: noDecay, weightDecay: 0 },
 * ], { lr: 3e-4 });
 */
export class AdamW extends AdamBase {
  constructor(params: ParamsSpec<AdamOptions>, options: Partial<AdamOptions> = {}) {
    super(params, {
      lr: 1e-3,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: 0.01,
      amsgrad: false,
      ...options,
    });
  }

  protected validate(o: AdamOptions): void {
    validate('AdamW', o);
  }

  protected update(p: Tensor, grad: Tensor, state: ParamState, g: ParamGroup<AdamOptions>): void {
    this.adamStep(p, grad, state, g, true);
  }
}
