import { matmul, OpError, randn, type Tensor, zeros } from '@lowrank/tensor';
import { composite, fmtShape } from './internal.js';
import { Module } from './module.js';

export interface Conv1DOptions {
  /** Standard deviation of the N(0, std²) weight init (Hugging Face's GPT-2 uses 0.02). */
  std?: number;
  device?: Tensor['device'];
}

/**
 * Hugging Face's `Conv1D` (GPT-2's projections): a linear layer whose weight is stored
 * **[in, out]** (transposed relative to `Linear`), so y = x·W + b. Checkpoint keys are
 * `weight` [in, out] and `bias` [out]. LoRA treats it as `fanInFanOut`.
 *
 * @example
 * const proj = new Conv1D(96, 32); // nf = 96 outputs, nx = 32 inputs, like HF's Conv1D(nf, nx)
 * proj.forward(x); // x [B, T, 32] → [B, T, 96]
 */
export class Conv1D extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly inFeatures: number;
  readonly outFeatures: number;

  /** Argument order as Hugging Face: `new Conv1D(nf = out, nx = in)`. */
  constructor(nf: number, nx: number, options: Conv1DOptions = {}) {
    super();
    if (!Number.isInteger(nf) || !Number.isInteger(nx) || nf <= 0 || nx <= 0) {
      throw new OpError('Conv1D', `nf and nx must be positive integers, got nf=${nf}, nx=${nx}`);
    }
    this.inFeatures = nx;
    this.outFeatures = nf;
    this.weight = this.registerParameter(
      'weight',
      randn([nx, nf], { std: options.std ?? 0.02, device: options.device }),
    );
    this.bias = this.registerParameter('bias', zeros([nf], { device: options.device }));
  }

  forward(x: Tensor): Tensor {
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.inFeatures) {
      throw new OpError(
        'Conv1D',
        `input's last dim must be ${this.inFeatures}, got input ${fmtShape(x.shape)}`,
      );
    }
    return composite([x, this.weight, this.bias], () => matmul(x, this.weight).add(this.bias)); // [..., out]
  }

  override extraRepr(): string {
    return `nf=${this.outFeatures}, nx=${this.inFeatures}`;
  }
}
