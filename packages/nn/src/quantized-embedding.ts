import {
  type Device,
  dequantize,
  OpError,
  type QuantFormat,
  QuantizedWeight,
  type QuantizeOptions,
  quantizedEmbedding,
  type Tensor,
} from '@lowrank/tensor';
import { withoutInit } from './init.js';
import { Embedding } from './layers.js';
import { Module } from './module.js';

/**
 * A frozen embedding table stored 16-bit or quantized (a `QuantizedWeight` [V, D] in f16, bf16, or
 * nf4/int8 without double quantization): `forward(ids)` gathers the rows' packed words and
 * decodes only those (`quantizedEmbedding`). Its codes and scales are non-persistent buffers
 * (`dispose()` and `to(device)` of an enclosing model handle them; `stateDict()` leaves them out).
 *
 * @example
 * const e = await QuantizedEmbedding.fromEmbedding(new Embedding(100, 16), { bits: 'bf16' });
 * e.forward(lr.tensor([[3, 7]], { dtype: 'int32' })); // [1, 2, 16]
 */
export class QuantizedEmbedding extends Module {
  /** int32 packed codes (buffer `qcodes`). */
  readonly qcodes: Tensor;
  /** Scales (buffer `qscales`; empty for f16/bf16). */
  readonly qscales: Tensor;
  #weight: QuantizedWeight;

  /** Takes over `weight` (refused when double-quantized: its scales cannot be gathered by row). */
  constructor(weight: QuantizedWeight) {
    super();
    if (weight.doubleQuant)
      throw new OpError(
        'QuantizedEmbedding',
        `a double-quantized ${weight.format} table cannot be gathered by rows`,
      );
    this.#weight = weight;
    this.qcodes = this.registerBuffer('qcodes', weight.codes, { persistent: false });
    this.qscales = this.registerBuffer('qscales', weight.scales, { persistent: false });
  }

  /**
   * Quantizes (or rounds to 16 bits) an `Embedding`'s table into a new layer; the old weight is
   * disposed.
   *
   * @example
   * const e = await QuantizedEmbedding.fromEmbedding(new Embedding(10, 4), { bits: 'f16' });
   * e.format; // 'f16'
   */
  static async fromEmbedding(layer: Embedding, options: QuantizeOptions): Promise<QuantizedEmbedding> {
    if (options.doubleQuant)
      throw new OpError('QuantizedEmbedding', 'a double-quantized table cannot be gathered by rows');
    const q = await QuantizedWeight.quantize(layer.weight, options);
    layer.weight.dispose();
    const out = new QuantizedEmbedding(q);
    out.training = layer.training;
    return out;
  }

  /** The table [V, D] (rebuilt over the buffers when `to(device)` moved them). */
  get weight(): QuantizedWeight {
    const w = this.#weight;
    if (w.codes !== this.qcodes || w.scales !== this.qscales)
      this.#weight = new QuantizedWeight({ ...w.parts(), codes: this.qcodes, scales: this.qscales });
    return this.#weight;
  }
  /** Storage format of the table. */
  get format(): QuantFormat {
    return this.#weight.format;
  }
  /** Rows (the vocabulary size). */
  get numEmbeddings(): number {
    return this.#weight.rows;
  }
  /** Width of each row. */
  get embeddingDim(): number {
    return this.#weight.cols;
  }
  /** Device of the table. */
  get device(): Device {
    return this.qcodes.device;
  }

  /**
   * A float32 `Embedding` with the decoded table (a new tensor, on the same device; this layer's
   * codes stay until it is disposed). `dequantizeModel` uses it, so a 16-bit model saves whole.
   *
   * @example
   * const e = await QuantizedEmbedding.fromEmbedding(new Embedding(10, 4), { bits: 'bf16' });
   * e.toFloat().weight.shape; // [10, 4]
   */
  toFloat(): Embedding {
    const layer = withoutInit(
      () => new Embedding(this.numEmbeddings, this.embeddingDim, { device: this.device }),
    );
    layer.weight.dispose();
    layer.registerParameter('weight', dequantize(this.weight));
    layer.training = this.training;
    return layer;
  }

  /** The rows at int32 `ids` (any shape) → float32 [...ids.shape, embeddingDim]. */
  forward(ids: Tensor): Tensor {
    return quantizedEmbedding(this.weight, ids);
  }

  override extraRepr(): string {
    return `${this.numEmbeddings}, ${this.embeddingDim}, format=${this.format}`;
  }
}
