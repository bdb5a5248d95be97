import { type Conv1D, type Linear, QuantizedLinear } from '@lowrank/nn';
import { cat, type Device, type Generator, loraExpand, OpError, type Tensor, zeros } from '@lowrank/tensor';
import { kaimingUniform, normal } from '../init.js';
import { AdapterParams, dropout } from '../internal.js';
import { type AdapterSpec, LoraLayer, type PlainFactors } from './base.js';
import { floatWeight } from './linear.js';

/**
 * LoRA on chosen slices of a fused projection (GPT-2's `c_attn` = [q | k | v]; loralib's
 * MergedLinear with `enable_lora = [true, false, true]`). Each enabled slice g has its own rank-r
 * pair: A [e·r, in] stacks the e enabled slices' A_g, B [e·slice, r] their B_g. The forward pass
 * computes x·A_gᵀ·B_gᵀ per enabled slice (never rebuilding ΔW, unlike loralib) and leaves the
 * disabled slices' outputs untouched. Saved in PEFT's plain form (rank e·r, zero blocks in B).
 */
export class LoraFusedLinear extends LoraLayer<Linear | Conv1D | QuantizedLinear> {
  /** A of each adapter, [e·r, in] (the enabled slices' A_g stacked), as `lora_A.<adapter>.weight`. */
  readonly lora_A = this.registerModule('lora_A', new AdapterParams('weight'));
  /** B of each adapter, [e·slice, r] (the enabled slices' B_g stacked), as `lora_B.<adapter>.weight`. */
  readonly lora_B = this.registerModule('lora_B', new AdapterParams('weight'));
  /** Output features of one slice (out / number of slices). */
  readonly sliceOut: number;

  constructor(
    base: Linear | Conv1D | QuantizedLinear,
    /** The base weight is stored [in, out] (GPT-2's Conv1D). */
    readonly fanInFanOut: boolean,
    /** Which output slices are adapted, e.g. [true, false, true] for q and v of `c_attn`. */
    readonly enable: readonly boolean[],
  ) {
    super(base);
    const out = this.outFeatures;
    if (out % enable.length !== 0) {
      throw new OpError('LoraFusedLinear', `${out} outputs do not split into ${enable.length} equal slices`);
    }
    this.sliceOut = out / enable.length;
  }
  /** Input features of the base layer. */
  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }
  /** Output features of the base layer (all slices). */
  get outFeatures(): number {
    return this.base_layer.outFeatures;
  }
  get baseWeight(): Tensor {
    return floatWeight(this.base_layer);
  }
  override get baseDevice(): Device {
    return this.base_layer instanceof QuantizedLinear
      ? this.base_layer.device
      : this.base_layer.weight.device;
  }
  /** Indices of the enabled slices, in order. */
  get enabledSlices(): number[] {
    return this.enable.flatMap((on, j) => (on ? [j] : []));
  }
  override get sliceCount(): number {
    return this.enabledSlices.length;
  }
  protected holders(): AdapterParams[] {
    return [this.lora_A, this.lora_B];
  }
  protected createParams(name: string, spec: AdapterSpec, init: boolean | 'gaussian', gen: Generator): void {
    const [e, r, device] = [this.enabledSlices.length, spec.r, this.baseDevice];
    const A =
      init === 'gaussian'
        ? normal([e * r, this.inFeatures], 1 / r, gen, device)
        : kaimingUniform([e * r, this.inFeatures], gen, device);
    const B =
      init === false
        ? kaimingUniform([e * this.sliceOut, r], gen, device)
        : zeros([e * this.sliceOut, r], { device });
    this.lora_A.set(name, A);
    this.lora_B.set(name, B);
  }
  protected addPath(y: Tensor, x: Tensor, name: string, spec: AdapterSpec): Tensor {
    const [A, B, r, s] = [this.lora_A.get(name), this.lora_B.get(name), spec.r, this.sliceOut];
    const h = dropout(x, spec.dropout, this.training, this.generator).matmul(A.T); // [..., e·r]
    let g = 0;
    const parts = this.enable.map((on, j) => {
      const yj = y.narrow(-1, j * s, s); // [..., slice]
      if (!on) return yj;
      const hg = h.narrow(-1, g * r, r);
      const out = loraExpand(yj, hg, B.narrow(0, g * s, s).T, { scale: spec.scaling }); // yj + s·h_g·B_gᵀ
      g++;
      return out;
    });
    return cat(parts, -1); // [..., out]
  }
  deltaWeight(name: string): Tensor {
    const { A, B, scaling } = this.plainFactors(name);
    const d = B.matmul(A).mul(scaling); // [out, in]
    return this.fanInFanOut ? d.T.contiguous() : d;
  }
  /** PEFT's plain form: A as is, B [out, e·r] with B_g in slice g's rows and block g's columns. */
  plainFactors(name: string): PlainFactors {
    const [A, B, r, s] = [
      this.lora_A.get(name),
      this.lora_B.get(name),
      this.specs.get(name)!.r,
      this.sliceOut,
    ];
    const e = this.enabledSlices.length;
    let g = 0;
    const rows = this.enable.map((on) => {
      if (!on) return zeros([s, e * r], { device: B.device });
      const blocks = [
        zeros([s, g * r], { device: B.device }),
        B.narrow(0, g * s, s),
        zeros([s, (e - g - 1) * r], { device: B.device }),
      ];
      g++;
      return cat(
        blocks.filter((t) => t.shape[1] > 0),
        1,
      );
    });
    return { A, B: cat(rows, 0), scaling: this.specs.get(name)!.scaling };
  }
}
