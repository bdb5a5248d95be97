import type { HostTensor, QuantizeModelOptions, RawSafetensorsTensor } from '@lowrank/nn';
import { initializers as init, safetensorsEntries } from '@lowrank/nn';
import { type Device, getDefaultDevice, type QuantFormat, setDefaultDevice } from '@lowrank/tensor';
import { gpt2Config } from './config.js';
import { GPT2LMHeadModel } from './gpt2.js';
import { type LoadDType, type LoadProgress, loadWeightsStreamingAsync } from './half-load.js';
import { gpt2KeysFromHF, loadGPT2Weights } from './hf.js';
import { LlamaForCausalLM } from './llama.js';
import {
  type AsyncRangeReader,
  type AsyncRawTensor,
  asyncRangeSafetensors,
  isAsyncRangeReader,
  isRangeReader,
  type RangeReader,
  rangeSafetensors,
} from './loading-source.js';
import { loadHFWeights, mergeShards, shardFiles } from './weights.js';

/**
 * Picking the model class from `config.json`'s `model_type`, as transformers'
 * `AutoModelForCausalLM`. Browser-safe: files come through a reader function;
 * `@lowrank/models/node` adds `fromPretrained(dir)`.
 */

/** The `model_type` values `AutoModelForCausalLM` knows, and the class each one gets. */
export const CAUSAL_LM_CLASSES = {
  /** GPT-2. */
  gpt2: 'GPT2LMHeadModel',
  /** Llama 2/3.x, SmolLM. */
  llama: 'LlamaForCausalLM',
  /** Qwen2/2.5 (q/k/v biases). */
  qwen2: 'LlamaForCausalLM',
  /** Mistral (sliding window). */
  mistral: 'LlamaForCausalLM',
} as const;

/** A `model_type` that `AutoModelForCausalLM` supports. */
export type CausalLMType = keyof typeof CAUSAL_LM_CLASSES;

/** Any model `AutoModelForCausalLM` makes. */
export type AutoCausalLM = GPT2LMHeadModel | LlamaForCausalLM;

/** Reads one file of a model directory by name; null when the file does not exist. */
export type FileReader = (name: string) => Promise<Uint8Array | null>;

/**
 * A `FileReader` that may give a `RangeReader` for a `.safetensors` file instead of its bytes:
 * the load then reads the header and each tensor's range, and never holds the file
 * (`@lowrank/models/node` reads this way).
 */
export type RangeFileReader = (name: string) => Promise<Uint8Array | RangeReader | null>;

/**
 * A `FileReader` that may give an `AsyncRangeReader` (or a `RangeReader`) for a `.safetensors`
 * file: a browser's `Blob` / `File` through `blobRangeReader`. The load reads the header, then
 * each tensor's range when it reaches it, and never holds the file.
 *
 * @example
 * const read: AsyncRangeFileReader = async (name) => {
 *   const f = files.get(name);
 *   if (!f) return null;
 *   return name.endsWith('.safetensors') ? blobRangeReader(f) : new Uint8Array(await f.arrayBuffer());
 * };
 */
export type AsyncRangeFileReader = (
  name: string,
) => Promise<Uint8Array | RangeReader | AsyncRangeReader | null>;

function modelType(config: Record<string, unknown>, fallback?: CausalLMType): CausalLMType {
  const t = config.model_type ?? fallback;
  if (typeof t === 'string' && Object.hasOwn(CAUSAL_LM_CLASSES, t)) return t as CausalLMType;
  const supported = Object.keys(CAUSAL_LM_CLASSES).join(', ');
  throw new Error(
    `AutoModelForCausalLM: model_type ${JSON.stringify(t ?? null)} is not supported (supported: ${supported})`,
  );
}

/** Options of `AutoModelForCausalLM.fromFiles`. */
export interface FromFilesOptions {
  /** Device to move the model to (the CPU by default). */
  device?: Device;
  /**
   * `'f16'` / `'bf16'`: keep the frozen base's Linear weights in 16 bits (`QuantizedLinear` over
   * an f16/bf16 `QuantizedWeight`, half the bytes of float32, decoded inside the matmul kernel);
   * a checkpoint already in that dtype is kept as it is, others are rounded to nearest even.
   * The embedding table too (`QuantizedEmbedding`): a tied head multiplies by the same 16-bit
   * words, so the table is stored once; norms, biases and an untied `lm_head` stay float32.
   * The base's float32 weights are never allocated (see `fromFiles`). `'f32'` (the default) widens everything to float32. GPT-2's Conv1D
   * weights ([in, out] in the file) become `QuantizedLinear`s with `fanInFanOut`, its tied `wte`
   * a 16-bit table read by the head, `wpe` 16-bit too.
   */
  dtype?: LoadDType;
  /**
   * Quantize the frozen base as the weights stream in (QLoRA): `'nf4'` / `'int8'` (shorthand for
   * `{ bits }`) or `QuantizeModelOptions`. Each Linear / Conv1D weight (bar `skip`, `['lm_head']`
   * by default) is decoded to float32 alone, quantized on the host and uploaded to `device` as a
   * `QuantizedLinear`, so no float32 copy of those weights ever exists beyond the one being
   * converted; the codes are those of loading in float32 then `quantizeModel`. Not with `dtype`.
   */
  quantize?: QuantizeModelOptions | QuantFormat;
  /** Called after each tensor is loaded. */
  onLoadProgress?: (progress: LoadProgress) => void;
  /** The `model_type` of a config that names none (GPT-2's `fromPretrained`: `'gpt2'`). */
  defaultType?: CausalLMType;
}

/** Builds the right causal LM for a `config.json`, and loads weights into it. */
// biome-ignore lint/complexity/noStaticOnlyClass: transformers' API (AutoModelForCausalLM.from_pretrained), subclassed in /node
export class AutoModelForCausalLM {
  /**
   * A freshly initialised model of the config's `model_type`.
   *
   * @example
   * const m = AutoModelForCausalLM.fromConfig(JSON.parse(configText)); // LlamaForCausalLM for 'qwen2'
   */
  static fromConfig(config: Record<string, unknown>, options: { seed?: number } = {}): AutoCausalLM {
    return modelType(config) === 'gpt2'
      ? new GPT2LMHeadModel(gpt2Config(config), options)
      : new LlamaForCausalLM(config, options);
  }

  /**
   * The model of the config with `tensors` (HF names) loaded; every missing, unexpected or
   * mis-shaped tensor is listed in the error.
   *
   * @example
   * const m = AutoModelForCausalLM.fromWeights(config, parseSafetensors(bytes).tensors);
   */
  static fromWeights(
    config: Record<string, unknown>,
    tensors: Readonly<Record<string, HostTensor>>,
  ): AutoCausalLM {
    // every parameter is overwritten (the load is strict): no random values are drawn
    const model = init.withoutInit(() => AutoModelForCausalLM.fromConfig(config));
    if (model instanceof GPT2LMHeadModel) loadGPT2Weights(model, tensors);
    else loadHFWeights(model, tensors, model.config.model_type);
    return model;
  }

  /**
   * A model from the files of an HF directory: `config.json` and `model.safetensors`, or the
   * shards of `model.safetensors.index.json`, streamed tensor by tensor. What the load holds:
   * the model, built on `device` without random init (weights are lazy zeros, holding no memory,
   * until their tensor is written; a weight that becomes 16-bit or quantized is never allocated
   * in float32), plus one tensor at a time: its bytes (a view of bytes `read` gave, or a fresh
   * buffer of its range when `read` gives a `RangeReader`, as Node's `fromPretrained` does, or an
   * `AsyncRangeReader`, as a browser's `blobRangeReader(file)`, read when the load reaches that
   * tensor, so the file is never held) and its decoded float32 copy, uploaded to `device` and dropped.
   * Every name and shape is checked against the model from the header before any tensor is read.
   *
   * @example
   * const model = await AutoModelForCausalLM.fromFiles(async (f) => bytesFromFolderPicker(f));
   * const qlora = await AutoModelForCausalLM.fromFiles(read, { device: 'webgpu', quantize: 'nf4' });
   * const picked = await AutoModelForCausalLM.fromFiles(async (f) => blobRangeReader(fileNamed(f))); // a browser File, read by range
   */
  static async fromFiles(
    read: FileReader | RangeFileReader | AsyncRangeFileReader,
    options: FromFilesOptions = {},
  ): Promise<AutoCausalLM> {
    const need = async (name: string, what: string): Promise<Uint8Array | RangeReader | AsyncRangeReader> => {
      const file = await read(name);
      if (!file) throw new Error(`${what} not found: ${name}`);
      return file;
    };
    const json = async (name: string, what: string): Promise<unknown> => {
      const file = await need(name, what);
      let bytes = file as Uint8Array;
      if (isRangeReader(file) || isAsyncRangeReader(file)) {
        try {
          bytes = await file.read(0, file.size); // a small JSON file
        } finally {
          file.close?.();
        }
      }
      try {
        return JSON.parse(new TextDecoder().decode(bytes));
      } catch (e) {
        if (e instanceof SyntaxError) throw new Error(`${what} is not valid JSON: ${name} (${e.message})`);
        throw e;
      }
    };
    const config = (await json('config.json', 'model config')) as Record<string, unknown>;
    const type = modelType(config, options.defaultType); // fail on the type before reading the weights
    const quantize = quantizeOptions(options.quantize);
    if (quantize && options.dtype && options.dtype !== 'f32')
      throw new Error(
        `AutoModelForCausalLM: quantize (${quantize.bits}) and dtype '${options.dtype}' both choose how the base is stored: give one (quantize: '${options.dtype}' also works)`,
      );
    const opened: (RangeReader | AsyncRangeReader)[] = [];
    type Streamed = RawSafetensorsTensor | AsyncRawTensor;
    const tensorsOf = async (
      file: Uint8Array | RangeReader | AsyncRangeReader,
    ): Promise<Record<string, Streamed>> => {
      if (isAsyncRangeReader(file)) {
        opened.push(file);
        return asyncRangeSafetensors(file);
      }
      if (!isRangeReader(file)) return safetensorsEntries(file).tensors;
      opened.push(file);
      return rangeSafetensors(file);
    };
    try {
      let raw: Record<string, Streamed>;
      const single = await read('model.safetensors');
      if (single) raw = await tensorsOf(single);
      else {
        const index = await json(
          'model.safetensors.index.json',
          'model weights (model.safetensors or its index)',
        );
        // mergeShards checks each shard's names against the index; it hands `parse` what `read`
        // gave, here an empty marker per shard standing for its (header-only) tensors
        const shards = new Map<Uint8Array, Record<string, Streamed>>();
        const markers = new Map<string, Uint8Array>();
        for (const file of shardFiles(index)) {
          const marker = new Uint8Array(0);
          markers.set(file, marker);
          const bytes = await need(file, 'weight shard');
          try {
            shards.set(marker, await tensorsOf(bytes));
          } catch (e) {
            throw new Error(`${file}: ${(e as Error).message}`);
          }
        }
        raw = mergeShards(
          index,
          (file) => markers.get(file) as Uint8Array,
          (marker) => shards.get(marker) as Record<string, Streamed>,
        );
      }
      // built on the device without random init: every weight is a lazy zero until its tensor
      // is written, and one that becomes 16-bit or quantized is never allocated in float32
      const device = options.device ?? 'cpu';
      const build = <M>(make: () => M): M => {
        const before = getDefaultDevice();
        setDefaultDevice(device);
        try {
          return init.withoutInit(make);
        } finally {
          setDefaultDevice(before);
        }
      };
      const load = {
        dtype: options.dtype ?? 'f32',
        quantize: quantize ? { skip: ['lm_head'], ...quantize } : undefined,
        onLoadProgress: options.onLoadProgress,
      } as const;
      let model: AutoCausalLM;
      if (type === 'gpt2') {
        // HF's GPT-2 names (with or without `transformer.`, mask buffers dropped); Conv1D weights
        // [in, out] are transposed to the [out, in] a QuantizedLinear reads
        const gpt2 = build(() => new GPT2LMHeadModel(gpt2Config(config)));
        try {
          await loadWeightsStreamingAsync(gpt2, Object.fromEntries(gpt2KeysFromHF(raw)), 'GPT-2', load);
        } catch (e) {
          gpt2.dispose();
          throw e;
        }
        model = gpt2;
      } else {
        const llama = build(() => new LlamaForCausalLM(config));
        try {
          await loadWeightsStreamingAsync(llama, raw, llama.config.model_type, load);
        } catch (e) {
          llama.dispose();
          throw e;
        }
        model = llama;
      }
      return model;
    } finally {
      for (const f of opened) f.close?.();
    }
  }
}

/**
 * `quantize` as options: `'nf4'` (or any format) is `{ bits: 'nf4' }`; undefined stays undefined.
 *
 * @example
 * quantizeOptions('int8'); // { bits: 'int8' }
 */
export function quantizeOptions(
  quantize: QuantizeModelOptions | QuantFormat | undefined,
): QuantizeModelOptions | undefined {
  if (quantize === undefined) return undefined;
  const formats = ['nf4', 'int8', 'f16', 'bf16'];
  const bits = typeof quantize === 'string' ? quantize : quantize?.bits;
  if (!formats.includes(bits as string))
    throw new Error(
      `quantize must be 'nf4', 'int8', 'f16', 'bf16' or { bits, blockSize, doubleQuant, skip }, got ${JSON.stringify(quantize)}`,
    );
  return typeof quantize === 'string' ? { bits: quantize } : quantize;
}
