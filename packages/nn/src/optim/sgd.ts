import { captureGuard, OpError, type Tensor } from '@lowrank/tensor';
import {
  type BaseOptions,
  Optimizer,
  type ParamGroup,
  type ParamState,
  type ParamsSpec,
} from './optimizer.js';

/** Options of `SGD` (PyTorch's names, camelCase). */
export interface SGDOptions extends BaseOptions {
  /** Momentum factor (default 0: plain SGD). */
  momentum: number;
  /** Dampening of the momentum (default 0). */
  dampening: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay: number;
  /** Nesterov momentum (default false). */
  nesterov: boolean;
}

/**
 * Stochastic gradient descent with PyTorch's update rule:
 * g ← g + wd·p; b ← μ·b + (1 − τ)·g (b = g at the first step); g ← g + μ·b (Nesterov) or b;
 * p ← p − lr·g.
 *
 * @example
 * const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
 */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ParamsSpec<SGDOptions>, options: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...options });
  }

  protected validate(o: SGDOptions): void {
    if (!(o.lr >= 0)) throw new OpError('SGD', `invalid learning rate ${o.lr}`);
    if (!(o.momentum >= 0)) throw new OpError('SGD', `invalid momentum ${o.momentum}`);
    if (!(o.weightDecay >= 0)) throw new OpError('SGD', `invalid weightDecay ${o.weightDecay}`);
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) {
      throw new OpError('SGD', 'Nesterov momentum requires a momentum and zero dampening');
    }
  }

  protected update(p: Tensor, grad: Tensor, state: ParamState, g: ParamGroup<SGDOptions>): void {
    // its scalars go into the ops' programs: a compiled step holds while they stay as traced
    const { lr, momentum, dampening, weightDecay, nesterov } = g;
    captureGuard(
      () =>
        g.lr === lr &&
        g.momentum === momentum &&
        g.dampening === dampening &&
        g.weightDecay === weightDecay &&
        g.nesterov === nesterov,
      'the SGD options',
    );
    let d = g.weightDecay !== 0 ? grad.add(p.mul(g.weightDecay)) : grad;
    if (g.momentum !== 0) {
      let buf = state.tensors.momentumBuffer;
      if (!buf) {
        buf = this.zerosLike(p).copy_(d);
        state.tensors.momentumBuffer = buf;
      } else {
        buf.mul_(g.momentum).add_(d, 1 - g.dampening);
      }
      d = g.nesterov ? d.add(buf.mul(g.momentum)) : buf;
    }
    p.add_(d, -g.lr);
  }
}
