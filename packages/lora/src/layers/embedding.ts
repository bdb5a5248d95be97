import type { Embedding } from '@lowrank/nn';
import { embedding, type Generator, loraExpand, type Tensor, zeros } from '@lowrank/tensor';
import { normal } from '../init.js';
import { AdapterParams } from '../internal.js';
import { type AdapterSpec, LoraLayer, type PlainFactors } from './base.js';

/**
 * LoRA on an `Embedding` (W [num, dim]): y = W[ids] + scaling · Aᵀ[ids]·Bᵀ with A [r, num] = 0
 * and B [dim, r] ~ N(0, 1) at init (PEFT's convention: the other way round from Linear). No dropout
 * on this path (as PEFT). Parameters: `lora_embedding_A.<adapter>`, `lora_embedding_B.<adapter>`.
 */
export class LoraEmbedding extends LoraLayer<Embedding> {
  /** A of each adapter, [r, numEmbeddings], as `lora_embedding_A.<adapter>` (PEFT's names). */
  readonly lora_embedding_A = this.registerModule('lora_embedding_A', new AdapterParams(null));
  /** B of each adapter, [embeddingDim, r], as `lora_embedding_B.<adapter>`. */
  readonly lora_embedding_B = this.registerModule('lora_embedding_B', new AdapterParams(null));

  get baseWeight(): Tensor {
    return this.base_layer.weight;
  }
  protected holders(): AdapterParams[] {
    return [this.lora_embedding_A, this.lora_embedding_B];
  }
  protected createParams(name: string, spec: AdapterSpec, init: boolean | 'gaussian', gen: Generator): void {
    const [num, dim] = this.baseWeight.shape;
    const device = this.baseWeight.device;
    this.lora_embedding_A.set(
      name,
      init === false ? normal([spec.r, num], 1, gen, device) : zeros([spec.r, num], { device }),
    );
    this.lora_embedding_B.set(name, normal([dim, spec.r], 1, gen, device));
  }
  protected addPath(y: Tensor, ids: Tensor, name: string, spec: AdapterSpec): Tensor {
    const h = embedding(this.lora_embedding_A.get(name).T, ids); // [..., r]
    return loraExpand(y, h, this.lora_embedding_B.get(name).T, { scale: spec.scaling }); // y + s·h·Bᵀ
  }
  deltaWeight(name: string): Tensor {
    const d = this.lora_embedding_B.get(name).matmul(this.lora_embedding_A.get(name)); // [dim, num]
    return d.T.mul(this.specs.get(name)!.scaling); // [num, dim]
  }
  plainFactors(name: string): PlainFactors {
    const A = this.lora_embedding_A.get(name);
    return { A, B: this.lora_embedding_B.get(name), scaling: this.specs.get(name)!.scaling };
  }
  protected override addMixedPath(y: Tensor, ids: Tensor, index: Tensor, AT: Tensor, BT: Tensor): Tensor {
    const [slots, num, R] = AT.shape; // Aᵀ of every adapter: [N+1, num, R]
    const b = ids.shape[0];
    const perSample = index.reshape([b, ...ids.shape.slice(1).map(() => 1)]).mul(num);
    const h = embedding(AT.reshape([slots * num, R]), ids.add(perSample)).reshape([b, -1, R]); // [b, T, R]: one gather
    return loraExpand(y.reshape([b, -1, BT.shape[2]]), h, BT, { index }).reshape(y.shape); // y + h·Bᵀ[index[b]]
  }
}
