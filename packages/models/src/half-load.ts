import { noGrad } from '@lowrank/autograd';
import {
  Conv1D,
  decodeSafetensor,
  Embedding,
  Linear,
  type Module,
  QuantizedEmbedding,
  QuantizedLinear,
  type QuantizeModelOptions,
  type RawSafetensorsTensor,
} from '@lowrank/nn';
import {
  fromTypedArray,
  type HalfFormat,
  halfData,
  type QuantFormat,
  type QuantizedData,
  QuantizedWeight,
  quantizeData,
  type Tensor,
} from '@lowrank/tensor';
import type { AsyncRawTensor } from './loading-source.js';
import { skippedHFKey } from './weights.js';

/**
 * Loading a checkpoint tensor by tensor, its frozen base kept in 16 bits (issue #17): each
 * `Linear` (or GPT-2 `Conv1D`) weight becomes a `QuantizedLinear` over an f16 / bf16
 * `QuantizedWeight` (two values a word, decoded inside the matmul kernel), each embedding table
 * a `QuantizedEmbedding` (a tied head reads the same words: the model multiplies by the table
 * with `quantizedMatmul`), every other tensor (norms, biases, position embeddings when asked) is
 * decoded to float32 and copied in, one at a time, straight from the file's bytes.
 */

/** The dtype a checkpoint is loaded in: float32, or a base kept in 16 bits. */
export type LoadDType = 'f32' | HalfFormat;

/** One loaded tensor, as `onLoadProgress` receives it. */
export interface LoadProgress {
  /** The tensor's name in the checkpoint. */
  name: string;
  /** Tensors loaded so far (this one included). */
  done: number;
  /** Tensors to load. */
  total: number;
  /** What it became: `'f16'` / `'bf16'` for a 16-bit base weight, the format of a quantized one, else `'float32'`. */
  storedAs: QuantFormat | 'float32';
  /** Bytes it takes in memory now. */
  bytes: number;
}

/** Options of `loadWeightsStreaming`. */
export interface StreamingLoadOptions {
  /** `'f16'` / `'bf16'` keep the Linear weights in 16 bits; `'f32'` loads everything as float32. */
  dtype: LoadDType;
  /**
   * Linear layers (names, or name suffixes after a dot) left in float32: `['lm_head']` by
   * default (a `lm_head` Linear is the fused loss's weight). A weight shared with another
   * module (tied) always stays float32.
   */
  skip?: readonly string[];
  /**
   * Keep `Embedding` tables in 16 bits too (`QuantizedEmbedding`, rows decoded as they are
   * gathered): true by default. A tied head (Llama's `tie_word_embeddings`, GPT-2's `wte`)
   * multiplies by the same 16-bit words, so a tied model's table and head take half the bytes.
   */
  embeddings?: boolean;
  /**
   * Quantize each `Linear` / `Conv1D` weight as it is read (`quantizeModel`'s rules: every such
   * layer but `skip`'s, refused for a weight two modules hold; embeddings, norms and biases stay
   * float32), so its float32 values exist only while that one weight is converted; the same
   * codes as loading in float32, then `quantizeModel`. Needs `dtype` `'f32'`.
   */
  quantize?: QuantizeModelOptions;
  /** Called after each tensor. */
  onLoadProgress?: (progress: LoadProgress) => void;
}

/** What `loadWeightsStreaming` did. */
export interface StreamingLoadReport {
  /** Layers (Linear and Embedding) whose weight is now 16-bit. */
  halfLayers: string[];
  /** Layers quantized as they loaded (`quantize`). */
  quantized: string[];
  /** Device bytes of those weights. */
  bytes: number;
  /** What they would take in float32. */
  f32Bytes: number;
}

const FILE_DTYPE: Record<HalfFormat, string> = { f16: 'F16', bf16: 'BF16' };
const FLOAT_DTYPES = new Set(['F16', 'BF16', 'F32', 'F64']);

/** a [rows, cols] row-major → [cols, rows] (a new array of the same type). */
function transposed<A extends Uint16Array | Float32Array>(a: A, rows: number, cols: number): A {
  const out = new (a.constructor as new (n: number) => A)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/**
 * The 16-bit data of a [rows, cols] weight ([cols, rows] with `transpose`: a GPT-2 Conv1D's
 * [in, out] becomes the [out, in] a `QuantizedLinear` reads): a file already in `format` is
 * packed as it is (no rounding, no float32 copy); any other float dtype is decoded and rounded
 * to nearest, ties to even (f16 refuses a finite value past ±65504).
 */
function halfWeight(
  name: string,
  t: RawSafetensorsTensor,
  format: HalfFormat,
  transpose: boolean,
): QuantizedData {
  const [r0, c0] = t.shape;
  const [rows, cols] = transpose ? [c0, r0] : [r0, c0];
  if (t.dtype === FILE_DTYPE[format]) {
    const n = rows * cols;
    const bits =
      t.bytes.byteOffset % 2 === 0
        ? new Uint16Array(t.bytes.buffer, t.bytes.byteOffset, n)
        : new Uint16Array(t.bytes.slice().buffer, 0, n);
    return halfData(format, transpose ? transposed(bits, r0, c0) : bits, rows, cols);
  }
  const decoded = decodeSafetensor(name, t).data as Float32Array;
  const values = transpose ? transposed(decoded, r0, c0) : decoded;
  try {
    return quantizeData(values, rows, cols, { bits: format });
  } catch (e) {
    throw new Error(`tensor '${name}' (${t.dtype}) as ${format}: ${(e as Error).message}`);
  }
}

function skipped(name: string, skip: readonly string[] | RegExp | undefined): boolean {
  if (!skip) return false;
  if (skip instanceof RegExp) return skip.test(name);
  return skip.some((k) => name === k || name.endsWith(`.${k}`));
}

/** A Linear / Conv1D weight [out, in] ([in, out] with `transpose`) quantized from its file values. */
function quantizedWeight(
  name: string,
  t: RawSafetensorsTensor,
  options: QuantizeModelOptions,
  transpose: boolean,
): QuantizedData {
  const [r0, c0] = t.shape;
  const decoded = decodeSafetensor(name, t).data as Float32Array;
  const values = transpose ? transposed(decoded, r0, c0) : decoded;
  try {
    return transpose ? quantizeData(values, c0, r0, options) : quantizeData(values, r0, c0, options);
  } catch (e) {
    throw new Error(`tensor '${name}' (${t.dtype}) as ${options.bits}: ${(e as Error).message}`);
  }
}

/**
 * Loads undecoded checkpoint tensors (`safetensorsEntries`, HF names) into `model` one at a
 * time, strictly (every missing, unexpected or mis-shaped key is listed in one error before
 * anything changes; old RoPE buffers and a tied `lm_head.weight` are skipped). With `dtype`
 * `'f16'` / `'bf16'` each Linear and Conv1D weight (bar `skip` and weights two modules hold)
 * becomes a 16-bit `QuantizedLinear` on the CPU (a Conv1D's [in, out] transposed to [out, in],
 * `fanInFanOut`), and each Embedding a `QuantizedEmbedding` (`embeddings`; a tied head then
 * reads the same 16-bit table), their float32 weights freed; the file's 16-bit values are kept
 * as they are, f32 ones rounded to nearest even. With `quantize`, each Linear / Conv1D weight
 * becomes a quantized `QuantizedLinear` instead (`StreamingLoadOptions.quantize`). Each tensor's
 * `bytes` is read once (a `rangeSafetensors` source reads its range then) and at most one
 * tensor's converted copy exists at a time.
 *
 * @example
 * const model = nn.init.withoutInit(() => new LlamaForCausalLM(config)); // no random values drawn
 * const report = loadWeightsStreaming(model, safetensorsEntries(bytes).tensors, 'Llama', { dtype: 'bf16' });
 * report.bytes / report.f32Bytes; // 0.5
 */
export function loadWeightsStreaming(
  model: Module,
  tensors: Readonly<Record<string, RawSafetensorsTensor>>,
  what: string,
  options: StreamingLoadOptions,
): StreamingLoadReport {
  const plan = planStreamingLoad(model, tensors, what, options);
  // one read of each tensor's bytes (a lazily read source reads its range here), dropped
  // once that tensor is loaded
  for (const [k, entry] of plan.entries) plan.load(k, entry.dtype, entry.shape, entry.bytes);
  return plan.report;
}

/**
 * `loadWeightsStreaming` over tensors whose bytes may be read asynchronously
 * (`asyncRangeSafetensors`: a browser's `Blob` / `File`): the same checks before anything
 * changes, then each tensor's bytes awaited when the load reaches it and loaded by the same
 * per-tensor step, so the load holds one tensor's bytes at a time and never the file. Tensors
 * with `bytes` (`safetensorsEntries`, `rangeSafetensors`) load as in the synchronous loader.
 *
 * @example
 * const model = nn.init.withoutInit(() => new LlamaForCausalLM(config));
 * const tensors = await asyncRangeSafetensors(blobRangeReader(file));
 * await loadWeightsStreamingAsync(model, tensors, 'Llama', { dtype: 'f32' });
 */
export async function loadWeightsStreamingAsync(
  model: Module,
  tensors: Readonly<Record<string, RawSafetensorsTensor | AsyncRawTensor>>,
  what: string,
  options: StreamingLoadOptions,
): Promise<StreamingLoadReport> {
  const plan = planStreamingLoad(model, tensors, what, options);
  for (const [k, entry] of plan.entries) {
    const bytes = 'readBytes' in entry ? await entry.readBytes() : entry.bytes;
    plan.load(k, entry.dtype, entry.shape, bytes);
  }
  return plan.report;
}

/** What a checked load will do: its tensors in load order, and the step that loads one of them. */
interface StreamingLoadPlan<T> {
  /** The checkpoint's tensors that load (old RoPE buffers, a tied head left out), in file order. */
  entries: [string, T][];
  /** Loads the tensor `key` from its bytes (and reports its progress). */
  load(key: string, dtype: RawSafetensorsTensor['dtype'], shape: number[], bytes: Uint8Array): void;
  /** Filled in as tensors load. */
  report: StreamingLoadReport;
}

/**
 * The shared part of the two loaders: every key and shape checked against the model (one error
 * listing every problem before anything changes), the layers that become 16-bit or quantized
 * chosen, and the per-tensor step.
 */
function planStreamingLoad<
  T extends { readonly dtype: RawSafetensorsTensor['dtype']; readonly shape: number[] },
>(
  model: Module,
  tensors: Readonly<Record<string, T>>,
  what: string,
  options: StreamingLoadOptions,
): StreamingLoadPlan<T> {
  const dtype = options.dtype;
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16')
    throw new Error(`load: dtype must be 'f32', 'f16' or 'bf16', got '${String(dtype)}'`);
  const own = model.stateDict();
  const ownKeys = new Set(Object.keys(own));
  const quantize = options.quantize;
  if (quantize && dtype !== 'f32')
    throw new Error(
      `load: quantize (${quantize.bits}) and dtype '${dtype}' both choose how the base is stored: give one`,
    );
  const holders = new Map<Tensor, string[]>();
  for (const [name, m] of model.namedModules())
    for (const [, p] of m.namedParameters({ recurse: false }))
      holders.set(p, [...(holders.get(p) ?? []), name]);
  type HalfLayer = Linear | Conv1D | Embedding;
  const half = new Map<string, [string, HalfLayer]>(); // weight key → layer
  if (quantize) {
    // quantizeModel's choice: every Linear/Conv1D not in skip; a tied one is refused, not left out
    for (const [name, m] of model.namedModules()) {
      if (name === '' || !(m instanceof Linear || m instanceof Conv1D) || skipped(name, quantize.skip))
        continue;
      const shared = (holders.get(m.weight) ?? []).filter((n) => n !== name);
      if (shared.length > 0)
        throw new Error(
          `load: '${name}' shares its weight with '${shared.join("', '")}' (tied weights): add '${name}' to quantize.skip`,
        );
      half.set(`${name}.weight`, [name, m]);
    }
  } else if (dtype !== 'f32') {
    const skip = options.skip ?? ['lm_head'];
    const tables = options.embeddings ?? true;
    for (const [name, m] of model.namedModules()) {
      const kind = m instanceof Linear || m instanceof Conv1D || (tables && m instanceof Embedding);
      if (kind && name !== '' && !skipped(name, skip) && holders.get((m as HalfLayer).weight)?.length === 1)
        half.set(`${name}.weight`, [name, m as HalfLayer]);
    }
  }
  const entries = Object.entries(tensors).filter(([k]) => !skippedHFKey(k, ownKeys));
  const problems: string[] = [];
  const given = new Set(entries.map(([k]) => k));
  const missing = [...ownKeys].filter((k) => !given.has(k));
  const unexpected = entries.filter(([k]) => !ownKeys.has(k)).map(([k]) => k);
  const shapes: string[] = [];
  for (const [k, t] of entries) {
    const target = own[k];
    if (!target) continue;
    if (t.shape.length !== target.rank || t.shape.some((d, i) => d !== target.shape[i]))
      shapes.push(`${k}: checkpoint [${t.shape.join(',')}], model [${target.shape.join(',')}]`);
    else if (half.has(k) && !FLOAT_DTYPES.has(t.dtype))
      shapes.push(`${k}: ${t.dtype} cannot become ${quantize?.bits ?? dtype} (a float dtype is needed)`);
  }
  if (shapes.length) problems.push(`mis-shaped keys:\n  ${shapes.join('\n  ')}`);
  if (missing.length) problems.push(`missing keys: ${missing.join(', ')}`);
  if (unexpected.length) problems.push(`unexpected keys: ${unexpected.join(', ')}`);
  if (problems.length)
    throw new Error(`${what} checkpoint does not match the config: ${problems.join('\n')}`);

  const report: StreamingLoadReport = { halfLayers: [], quantized: [], bytes: 0, f32Bytes: 0 };
  let done = 0;
  const load = (
    k: string,
    fileDtype: RawSafetensorsTensor['dtype'],
    shape: number[],
    fileBytes: Uint8Array,
  ) => {
    const t: RawSafetensorsTensor = { dtype: fileDtype, shape, bytes: fileBytes };
    const layer = half.get(k);
    let storedAs: LoadProgress['storedAs'] = 'float32';
    let bytes: number;
    if (layer && (quantize || dtype !== 'f32')) {
      const [name, old] = layer;
      const conv = old instanceof Conv1D;
      const data = quantize
        ? quantizedWeight(k, t, quantize, conv)
        : halfWeight(k, t, dtype as HalfFormat, conv);
      const w = QuantizedWeight.fromData(data, old.weight.device);
      const q = old instanceof Embedding ? new QuantizedEmbedding(w) : new QuantizedLinear(w, old.bias, conv);
      q.training = old.training;
      old.weight.dispose();
      model.setSubmodule(name, q);
      (quantize ? report.quantized : report.halfLayers).push(name);
      report.bytes += w.bytes;
      report.f32Bytes += w.f32Bytes;
      storedAs = w.format;
      bytes = w.bytes;
    } else {
      const target = own[k];
      const host = decodeSafetensor(k, t);
      noGrad(() => {
        const src = fromTypedArray(host.data, target.shape, { dtype: host.dtype, device: target.device });
        target.copy_(src);
        src.dispose();
      });
      bytes = target.size * (target.dtype === 'bool' ? 1 : 4);
    }
    done++;
    options.onLoadProgress?.({ name: k, done, total: entries.length, storedAs, bytes });
  };
  return { entries, load, report };
}
