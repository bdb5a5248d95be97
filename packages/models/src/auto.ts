import type { HostTensor, RawSafetensorsTensor } from '@lowrank/nn';
import { initializers as init, parseSafetensors, safetensorsEntries } from '@lowrank/nn';
import type { Device } from '@lowrank/tensor';
import { gpt2Config } from './config.js';
import { GPT2LMHeadModel } from './gpt2.js';
import { type LoadDType, type LoadProgress, loadWeightsStreaming } from './half-load.js';
import { gpt2KeysFromHF, loadGPT2Weights } from './hf.js';
import { LlamaForCausalLM } from './llama.js';
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

function modelType(config: Record<string, unknown>): CausalLMType {
  const t = config.model_type;
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
   * The model is built without random
   * initialisation and loaded tensor by tensor from the file's bytes, so no float32 copy of the
   * checkpoint exists. `'f32'` (the default) widens everything to float32. GPT-2's Conv1D
   * weights ([in, out] in the file) become `QuantizedLinear`s with `fanInFanOut`, its tied `wte`
   * a 16-bit table read by the head, `wpe` 16-bit too.
   */
  dtype?: LoadDType;
  /** Called after each tensor is loaded (streaming load, as with `dtype`). */
  onLoadProgress?: (progress: LoadProgress) => void;
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
   * shards of `model.safetensors.index.json`. Moved to `device` when given.
   *
   * @example
   * const model = await AutoModelForCausalLM.fromFiles(async (f) => bytesFromFolderPicker(f));
   */
  static async fromFiles(read: FileReader, options: FromFilesOptions = {}): Promise<AutoCausalLM> {
    const need = async (name: string, what: string): Promise<Uint8Array> => {
      const bytes = await read(name);
      if (!bytes) throw new Error(`${what} not found: ${name}`);
      return bytes;
    };
    const json = async (name: string, what: string): Promise<unknown> => {
      try {
        return JSON.parse(new TextDecoder().decode(await need(name, what)));
      } catch (e) {
        if (e instanceof SyntaxError) throw new Error(`${what} is not valid JSON: ${name} (${e.message})`);
        throw e;
      }
    };
    const config = (await json('config.json', 'model config')) as Record<string, unknown>;
    const type = modelType(config); // fail on the type before reading the weights
    const streaming = (options.dtype !== undefined && options.dtype !== 'f32') || options.onLoadProgress;
    const single = await read('model.safetensors');
    if (streaming) {
      let raw: Record<string, RawSafetensorsTensor>;
      if (single) raw = safetensorsEntries(single).tensors;
      else {
        const index = await json(
          'model.safetensors.index.json',
          'model weights (model.safetensors or its index)',
        );
        const shards = new Map<string, Uint8Array>();
        for (const file of shardFiles(index)) shards.set(file, await need(file, 'weight shard'));
        raw = mergeShards(
          index,
          (file) => shards.get(file) as Uint8Array,
          (b) => safetensorsEntries(b).tensors,
        );
      }
      const load = { dtype: options.dtype ?? 'f32', onLoadProgress: options.onLoadProgress } as const;
      let model: AutoCausalLM;
      if (type === 'gpt2') {
        // HF's GPT-2 names (with or without `transformer.`, mask buffers dropped); Conv1D weights
        // [in, out] are transposed to the [out, in] a 16-bit QuantizedLinear reads
        const gpt2 = init.withoutInit(() => new GPT2LMHeadModel(gpt2Config(config)));
        loadWeightsStreaming(gpt2, Object.fromEntries(gpt2KeysFromHF(raw)), 'GPT-2', load);
        model = gpt2;
      } else {
        const llama = init.withoutInit(() => new LlamaForCausalLM(config));
        loadWeightsStreaming(llama, raw, llama.config.model_type, load);
        model = llama;
      }
      if (options.device && options.device !== 'cpu') await model.to(options.device);
      return model;
    }
    let tensors: Readonly<Record<string, HostTensor>>;
    if (single) tensors = parseSafetensors(single).tensors;
    else {
      const index = await json(
        'model.safetensors.index.json',
        'model weights (model.safetensors or its index)',
      );
      const shards = new Map<string, Uint8Array>();
      for (const file of shardFiles(index)) shards.set(file, await need(file, 'weight shard'));
      tensors = mergeShards(index, (file) => shards.get(file) as Uint8Array);
    }
    const model = AutoModelForCausalLM.fromWeights(config, tensors);
    if (options.device && options.device !== 'cpu') await model.to(options.device);
    return model;
  }
}
