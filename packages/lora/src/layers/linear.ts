import { type Conv1D, type Linear, QuantizedLinear } from '@lowrank/nn';
import { type Device, type Generator, loraExpand, OpError, type Tensor, zeros } from '@lowrank/tensor';
import { kaimingUniform, normal } from '../init.js';
import { AdapterParams, dropout } from '../internal.js';
import { type AdapterSpec, LoraLayer, type PlainFactors } from './base.js';

/**
 * LoRA on a `Linear` (W [out, in]) or a `Conv1D` (W [in, out], fanInFanOut):
 * y = base(x) + scaling · dropout(x)·Aᵀ·Bᵀ with A [r, in], B [out, r] (PEFT's shapes for both);
 * the expand is scaled and added into the base output by one kernel (`loraExpand`).
 * Parameters: `lora_A.<adapter>.weight`, `lora_B.<adapter>.weight`.
 */
export class LoraLinear extends LoraLayer<Linear | Conv1D | QuantizedLinear> {
  /** A of each adapter, [r, in], as `lora_A.<adapter>.weight`. */
  readonly lora_A = this.registerModule('lora_A', new AdapterParams('weight'));
  /** B of each adapter, [out, r], as `lora_B.<adapter>.weight`. */
  readonly lora_B = this.registerModule('lora_B', new AdapterParams('weight'));

  constructor(
    base: Linear | Conv1D | QuantizedLinear,
    /** The base weight is stored [in, out] (GPT-2's Conv1D). */
    readonly fanInFanOut: boolean,
  ) {
    super(base);
  }
  /** Input features of the base layer. */
  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }
  /** Output features of the base layer. */
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
  protected holders(): AdapterParams[] {
    return [this.lora_A, this.lora_B];
  }
  protected createParams(name: string, spec: AdapterSpec, init: boolean | 'gaussian', gen: Generator): void {
    const device = this.baseDevice;
    const [r, inF, outF] = [spec.r, this.inFeatures, this.outFeatures];
    const A =
      init === 'gaussian' ? normal([r, inF], 1 / r, gen, device) : kaimingUniform([r, inF], gen, device);
    // init false: B random too (PEFT leaves both at nn.Linear's default), so ΔW ≠ 0
    const B = init === false ? kaimingUniform([outF, r], gen, device) : zeros([outF, r], { device });
    this.lora_A.set(name, A);
    this.lora_B.set(name, B);
  }
  protected addPath(y: Tensor, x: Tensor, name: string, spec: AdapterSpec): Tensor {
    const h = dropout(x, spec.dropout, this.training, this.generator).matmul(this.lora_A.get(name).T); // [..., r]
    return loraExpand(y, h, this.lora_B.get(name).T, { scale: spec.scaling }); // y + s·h·Bᵀ in one kernel
  }
  deltaWeight(name: string): Tensor {
    const d = this.lora_B.get(name).matmul(this.lora_A.get(name)).mul(this.specs.get(name)!.scaling); // [out, in]
    return this.fanInFanOut ? d.T.contiguous() : d;
  }
  plainFactors(name: string): PlainFactors {
    return { A: this.lora_A.get(name), B: this.lora_B.get(name), scaling: this.specs.get(name)!.scaling };
  }
}

/** The float32 weight of a base layer; a quantized one has none (it is a `QuantizedWeight`). */
export function floatWeight(base: Linear | Conv1D | QuantizedLinear): Tensor {
  if (base instanceof QuantizedLinear)
    throw new OpError(
      'lora',
      `the base layer is quantized (${base.format}): its weight is a QuantizedWeight, not a tensor (dequantizedWeight() gives a float32 copy)`,
    );
  return base.weight;
}
