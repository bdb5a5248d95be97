import {
  type Device,
  dequantize,
  OpError,
  type QuantFormat,
  QuantizedWeight,
  type QuantizeOptions,
  quantizedMatmul,
  type Tensor,
  tidy,
} from '@lowrank/tensor';
import { Conv1D } from './conv1d.js';
import { fmtShape, noGrad } from './internal.js';
import { Linear } from './layers.js';
import { Module } from './module.js';
import { QuantizedEmbedding } from './quantized-embedding.js';

/**
 * A frozen linear layer over a quantized weight (QLoRA's base layers): y = x·dequant(W)ᵀ + b with
 * W [out, in] stored as NF4 or int8 codes and block scales (`QuantizedWeight`), decoded inside
 * the matmul kernel. It stands for a `Linear` or, with `fanInFanOut`, a GPT-2 `Conv1D` (whose
 * [in, out] weight was transposed to [out, in] when quantized, so blocks run along the input
 * features either way). The weight has no gradient; the bias is an ordinary parameter.
 *
 * Its codes and scales are registered as non-persistent buffers: `dispose()` and `to(device)`
 * of an enclosing model handle them, and `stateDict()` leaves them out.
 *
 * @example
 * const q = await QuantizedLinear.fromLayer(new Linear(64, 8), { bits: 'nf4' });
 * q.forward(lr.randn([2, 64])); // [2, 8]
 */
export class QuantizedLinear extends Module {
  /** [out], or null. */
  readonly bias: Tensor | null;
  /** int32 packed codes (buffer `qcodes`). */
  readonly qcodes: Tensor;
  /** Block scales (buffer `qscales`): float32, or int32 words of int8 codes under double quantization. */
  readonly qscales: Tensor;
  /** Double quantization's steps (buffer `qsteps`), or null. */
  readonly qsteps: Tensor | null;
  #weight: QuantizedWeight;

  constructor(
    weight: QuantizedWeight,
    bias: Tensor | null,
    /** The layer it stands for stored its weight [in, out] (GPT-2's Conv1D). */
    readonly fanInFanOut = false,
  ) {
    super();
    if (bias && (bias.rank !== 1 || bias.shape[0] !== weight.rows))
      throw new OpError('QuantizedLinear', `bias must be [${weight.rows}], got ${fmtShape(bias.shape)}`);
    this.#weight = weight;
    this.qcodes = this.registerBuffer('qcodes', weight.codes, { persistent: false });
    this.qscales = this.registerBuffer('qscales', weight.scales, { persistent: false });
    this.qsteps = this.registerBuffer('qsteps', weight.steps, { persistent: false });
    this.bias = this.registerParameter('bias', bias);
  }

  /**
   * Quantizes a `Linear` or `Conv1D` (on its device) into a new layer that takes over its bias
   * tensor; the old layer's weight is disposed.
   *
   * @example
   * const q = await QuantizedLinear.fromLayer(new Conv1D(8, 64), { bits: 'int8', blockSize: 'channel' });
   * q.fanInFanOut; // true
   */
  static async fromLayer(layer: Linear | Conv1D, options: QuantizeOptions): Promise<QuantizedLinear> {
    const conv = layer instanceof Conv1D;
    // in a tidy: the transposed view `.T` is a tensor of its own over the weight's storage, and
    // left undisposed it kept every Conv1D's float32 weight alive next to its codes (GPT-2 124M
    // on the H200: 324 MiB more live on a quantized base than on the float32 one)
    const w = conv ? noGrad(() => tidy(() => layer.weight.T.contiguous())) : layer.weight;
    const q = await QuantizedWeight.quantize(w, options);
    if (conv) w.dispose();
    layer.weight.dispose();
    const out = new QuantizedLinear(q, layer.bias, conv);
    out.training = layer.training;
    if (layer.bias) out.bias?.requiresGrad_(layer.bias.requiresGrad);
    return out;
  }

  /** The quantized weight [out, in] (rebuilt over the buffers when `to(device)` moved them). */
  get weight(): QuantizedWeight {
    const w = this.#weight;
    if (w.codes !== this.qcodes || w.scales !== this.qscales || w.steps !== this.qsteps) {
      this.#weight = new QuantizedWeight({
        ...w.parts(),
        codes: this.qcodes,
        scales: this.qscales,
        steps: this.qsteps,
      });
    }
    return this.#weight;
  }
  /** Storage format of the weight. */
  get format(): QuantFormat {
    return this.#weight.format;
  }
  /** Input features. */
  get inFeatures(): number {
    return this.#weight.cols;
  }
  /** Output features. */
  get outFeatures(): number {
    return this.#weight.rows;
  }
  /** Device of the weight. */
  get device(): Device {
    return this.qcodes.device;
  }

  /** `x · dequant(W)ᵀ + bias` over the last dim of x. */
  forward(x: Tensor): Tensor {
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.inFeatures)
      throw new OpError(
        'QuantizedLinear',
        `input's last dim must be in_features=${this.inFeatures}, got input ${fmtShape(x.shape)}`,
      );
    const y = quantizedMatmul(x, this.weight);
    return this.bias ? y.add(this.bias) : y;
  }

  /**
   * The float32 weight in the layout of the layer it stands for: [out, in], or [in, out] with
   * `fanInFanOut` (a new tensor).
   */
  dequantizedWeight(): Tensor {
    return tidy(() => {
      const w = dequantize(this.weight);
      return this.fanInFanOut ? w.T.contiguous() : w;
    });
  }

  /**
   * W ← requantize(dequant(W) + sign·delta) (delta in the layout of `dequantizedWeight`), with
   * the same format and blocks (and, double-quantized, the same scale mean), by the device's
   * `quantize` kernel. Rounding to the code grid changes outputs by more than float32 rounding
   * would: LoRA's `merge` warns about it once.
   */
  addDelta(delta: Tensor, sign: 1 | -1 = 1): void {
    const w = this.weight;
    const next = noGrad(() =>
      tidy(() => {
        const d = this.fanInFanOut ? delta.T : delta;
        if (d.shape[0] !== w.rows || d.shape[1] !== w.cols)
          throw new OpError(
            'QuantizedLinear.addDelta',
            `delta must be ${fmtShape(this.fanInFanOut ? [w.cols, w.rows] : [w.rows, w.cols])}, got ${fmtShape(delta.shape)}`,
          );
        const full = dequantize(w).add(sign === 1 ? d : d.neg());
        // double quantization keeps the scales' centring offset, so every device requantizes alike
        return QuantizedWeight.quantizeNow(full, {
          bits: w.format,
          blockSize: w.blockSize,
          doubleQuant: w.doubleQuant,
          scaleMean: w.doubleQuant ? w.scaleMean : undefined,
        });
      }),
    );
    this.registerBuffer('qcodes', next.codes, { persistent: false });
    this.registerBuffer('qscales', next.scales, { persistent: false });
    this.registerBuffer('qsteps', next.steps, { persistent: false });
    w.dispose();
    this.#weight = next;
  }

  /** A full-precision `Linear` (or `Conv1D`) with the dequantized weight, sharing this layer's bias. */
  toFloat(): Linear | Conv1D {
    const w = this.dequantizedWeight();
    const layer = this.fanInFanOut
      ? new Conv1D(this.outFeatures, this.inFeatures, { device: this.device })
      : new Linear(this.inFeatures, this.outFeatures, { device: this.device, bias: this.bias !== null });
    layer.weight.dispose();
    layer.registerParameter('weight', w);
    if (this.bias) {
      layer.bias?.dispose();
      layer.registerParameter('bias', this.bias, { requiresGrad: this.bias.requiresGrad });
    } else if (layer.bias) {
      // Conv1D always has a bias: a quantized Conv1D without one keeps zeros
      layer.bias.requiresGrad_(false);
    }
    layer.training = this.training;
    return layer;
  }

  override extraRepr(): string {
    const w = this.#weight;
    return `inFeatures=${this.inFeatures}, outFeatures=${this.outFeatures}, bias=${this.bias !== null}, format=${w.format}, blockSize=${w.blockSize}${w.doubleQuant ? ', doubleQuant' : ''}${this.fanInFanOut ? ', fanInFanOut' : ''}`;
  }
}

/** Options of `quantizeModel`. */
export interface QuantizeModelOptions {
  /** `'nf4'`, `'int8'`, or a 16-bit float `'f16'` / `'bf16'` (half the bytes of float32, decoded exactly; no blocks). */
  bits: QuantFormat;
  /** Values per absmax block (64 by default; `'channel'`: one per output feature). */
  blockSize?: number | 'channel';
  /** Double-quantize the block scales (8 bits, blocks of 256). */
  doubleQuant?: boolean;
  /**
   * Module names (or name suffixes after a dot) to leave in float32, e.g. `['lm_head']`, or a
   * RegExp over the full name.
   */
  skip?: readonly string[] | RegExp;
}

/** What `quantizeModel` did. */
export interface QuantizeModelReport {
  /** Names of the layers now quantized. */
  quantized: string[];
  /** Linear/Conv1D layers left in float32 by `skip`. */
  skipped: string[];
  /** Device bytes of the quantized weights. */
  bytes: number;
  /** Bytes those weights took as float32. */
  f32Bytes: number;
}

function skipped(name: string, skip: QuantizeModelOptions['skip']): boolean {
  if (!skip) return false;
  if (skip instanceof RegExp) return skip.test(name);
  return skip.some((k) => name === k || name.endsWith(`.${k}`));
}

/**
 * Quantizes a model's frozen base in memory: every `Linear` and `Conv1D` (not named by `skip`)
 * is replaced by a `QuantizedLinear` on the same device, its float32 weight freed. Embeddings,
 * norms and biases stay float32. Apply LoRA afterwards (`applyLora` adapts `QuantizedLinear`s as
 * it does the layers they replaced, and adapters stay plain PEFT files). Quantize after moving
 * the model to its device.
 *
 * @example
 * const model = new nn.Sequential(new nn.Linear(64, 64), new nn.GELU(), new nn.Linear(64, 2));
 * const report = await quantizeModel(model, { bits: 'nf4', skip: ['2'] });
 * report.quantized; // ['0']
 */
export async function quantizeModel(
  model: Module,
  options: QuantizeModelOptions,
): Promise<QuantizeModelReport> {
  const report: QuantizeModelReport = { quantized: [], skipped: [], bytes: 0, f32Bytes: 0 };
  const targets = model
    .namedModules()
    .filter(([name, m]) => name !== '' && (m instanceof Linear || m instanceof Conv1D)) as [
    string,
    Linear | Conv1D,
  ][];
  if (targets.some(([name]) => name.split('.').includes('base_layer')))
    throw new OpError('quantizeModel', 'the model already has LoRA layers: quantize first, then apply LoRA');
  // who holds each weight: a tied weight (lm_head = the embeddings) must not be freed under its other user
  const holders = new Map<Tensor, string[]>();
  for (const [name, m] of model.namedModules())
    for (const [, p] of m.namedParameters({ recurse: false }))
      holders.set(p, [...(holders.get(p) ?? []), name]);
  const chosen = targets.filter(([name]) => {
    if (skipped(name, options.skip)) report.skipped.push(name);
    return !skipped(name, options.skip);
  });
  // checked before any layer changes, so a refusal leaves the model as it was
  for (const [name, layer] of chosen) {
    const shared = (holders.get(layer.weight) ?? []).filter((n) => n !== name);
    if (shared.length > 0)
      throw new OpError(
        'quantizeModel',
        `'${name}' shares its weight with '${shared.join("', '")}' (tied weights): add '${name}' to skip`,
      );
  }
  for (const [name, layer] of chosen) {
    const q = await QuantizedLinear.fromLayer(layer, options);
    model.setSubmodule(name, q);
    report.quantized.push(name);
    report.bytes += q.weight.bytes;
    report.f32Bytes += q.weight.f32Bytes;
  }
  return report;
}

/**
 * Replaces every `QuantizedLinear` of a model by a float32 `Linear`/`Conv1D` with its dequantized
 * weight (sharing its bias), and every `QuantizedEmbedding` (a 16-bit load's tables) by a float32
 * `Embedding`, and frees the codes. Returns the model.
 *
 * @example
 * await quantizeModel(model, { bits: 'int8' });
 * dequantizeModel(model); // the Linear layers are back, with the rounded weights
 */
export function dequantizeModel<M extends Module>(model: M): M {
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof QuantizedLinear || m instanceof QuantizedEmbedding)) continue;
    const layer = m.toFloat();
    model.setSubmodule(name, layer);
    m.weight.dispose();
  }
  return model;
}

/** Bytes of a model's tensors by storage type, beside what they would take in float32. */
export interface ModelFootprint {
  /** Bytes per storage type: float32 parameters/buffers, nf4 and int8 quantized weights. */
  byType: Partial<Record<'float32' | 'int32' | 'bool' | QuantFormat, number>>;
  /** All of them. */
  bytes: number;
  /** The same model with every weight in float32. */
  f32Bytes: number;
  /** The quantized weights alone: their bytes and their float32 size. */
  quantized: {
    /** Device bytes of the codes and scales. */
    bytes: number;
    /** The same weights in float32. */
    f32Bytes: number;
  };
}

/**
 * The model's memory by storage type (shared tensors counted once): quantized and 16-bit
 * weights (`QuantizedLinear`, `QuantizedEmbedding`) under their format, everything else under
 * its dtype, and the float32 size of the same model, so the ratio of a quantized base can be
 * read off (NF4 in blocks of 64: 4.5 bits a weight, 0.14×; f16/bf16: 0.5×).
 *
 * @example
 * const fp = modelFootprint(model);
 * fp.quantized.bytes / fp.quantized.f32Bytes; // ≈ 0.14 for NF4
 */
export function modelFootprint(model: Module): ModelFootprint {
  const fp: ModelFootprint = { byType: {}, bytes: 0, f32Bytes: 0, quantized: { bytes: 0, f32Bytes: 0 } };
  const add = (type: keyof ModelFootprint['byType'], bytes: number, f32: number) => {
    fp.byType[type] = (fp.byType[type] ?? 0) + bytes;
    fp.bytes += bytes;
    fp.f32Bytes += f32;
  };
  const quantTensors = new Set<Tensor>();
  for (const m of model.modules()) {
    if (!(m instanceof QuantizedLinear || m instanceof QuantizedEmbedding)) continue;
    const w = m.weight;
    for (const t of [w.codes, w.scales, w.steps]) if (t) quantTensors.add(t);
    add(w.format, w.bytes, w.f32Bytes);
    fp.quantized.bytes += w.bytes;
    fp.quantized.f32Bytes += w.f32Bytes;
  }
  const seen = new Set<Tensor>();
  for (const t of [...model.parameters(), ...model.buffers()]) {
    if (seen.has(t) || quantTensors.has(t)) continue;
    seen.add(t);
    const bytes = t.size * (t.dtype === 'bool' ? 1 : 4);
    add(t.dtype, bytes, bytes);
  }
  return fp;
}
