import { addmm, OpError, type Tensor, zeros } from '@lowrank/tensor';
import * as init from './init.js';
import { composite, fmtShape } from './internal.js';
import type { LayerOptions } from './layers.js';
import { Module } from './module.js';

/**
 * Hugging Face's GPT-2 `Conv1D`: a linear layer whose weight is stored [in, out] (transposed
 * relative to `Linear`), so GPT-2 checkpoints load as they are. y = x·W + b. Constructor
 * arguments in HF's order: `new Conv1D(nf, nx)` = (out features, in features). Initialised as
 * HF does: W ~ N(0, 0.02²), b = 0.
 */
export class Conv1D extends Module {
  /** [nx, nf] = [in, out]: transposed relative to `Linear` (GPT-2's layout). */
  readonly weight: Tensor;
  /** [nf]. */
  readonly bias: Tensor;

  constructor(
    /** Output features (Hugging Face's name). */
    readonly nf: number,
    /** Input features (Hugging Face's name). */
    readonly nx: number,
    options: LayerOptions = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', init.normal([nx, nf], 0, 0.02, options));
    this.bias = this.registerParameter('bias', zeros([nf], { device: options.device }));
  }

  /** Input features (`nx`). */
  get inFeatures(): number {
    return this.nx;
  }

  /** Output features (`nf`). */
  get outFeatures(): number {
    return this.nf;
  }

  /**
   * `x · weight + bias` over the last dim of `x`, as one `addmm` (the bias is added as the matmul
   * stores its tile: on the H200 GPT-2's c_attn took 0.43 ms this way against 1.42 ms for the
   * matmul and a separate add).
   */
  forward(x: Tensor): Tensor {
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.nx) {
      throw new OpError('Conv1D', `input's last dim must be ${this.nx}, got ${fmtShape(x.shape)}`);
    }
    return composite([x, this.weight, this.bias], () => addmm(x, this.weight, { bias: this.bias })); // [..., nf]
  }

  override extraRepr(): string {
    return `nf=${this.nf}, nx=${this.nx}`;
  }
}
