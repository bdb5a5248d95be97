/**
 * Node-only helpers (files): `import { fromPretrained } from '@lowrank/models/node'`.
 *
 * @module @lowrank/models/node
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  QuantizedEmbedding,
  QuantizedLinear,
  type QuantizeModelOptions,
  stateDictToSafetensors,
} from '@lowrank/nn';
import type { Device, QuantFormat } from '@lowrank/tensor';
import {
  type AutoCausalLM,
  AutoModelForCausalLM as AutoModelFromFiles,
  type FromFilesOptions,
} from './auto.js';
import { GPT2LMHeadModel } from './gpt2.js';
import type { LoadDType, LoadProgress } from './half-load.js';
import { gpt2ConfigJSON, gpt2ToSafetensors } from './hf.js';
import { HFTokenizer, isHFTokenizerJson } from './hf-tokenizer.js';
import { isHubId } from './hub.js';
import { type HubDirOptions, hubSnapshotDir } from './hub-node.js';
import type { LlamaForCausalLM } from './llama.js';
import type { RangeReader } from './loading-source.js';
import { type Tokenizer, type TokenizerSpec, tokenizerFromSpec } from './tokenizer.js';

/** The files of a Hugging Face tokenizer that `savePretrained` copies beside a model. */
export const HF_TOKENIZER_FILES: readonly string[] = [
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
  'special_tokens_map.json',
];

/**
 * Reads a file, failing with one line that names it.
 *
 * @example
 * const bytes = readBytes('gpt2/model.safetensors', 'model weights');
 */
export function readBytes(path: string, what = 'file'): Uint8Array {
  if (!existsSync(path)) throw new Error(`${what} not found: ${path}`);
  return new Uint8Array(readFileSync(path));
}

/**
 * Reads and parses a JSON file, failing with one line that names it.
 *
 * @example
 * const config = readJSON('gpt2/config.json', 'model config');
 */
export function readJSON(path: string, what = 'file'): Record<string, unknown> {
  const text = new TextDecoder().decode(readBytes(path, what));
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${path} (${(e as Error).message})`);
  }
}

export * from './hub-node.js';

/**
 * A `RangeReader` over a file: each `read` is one `readSync` of that range into a fresh buffer,
 * so a load holds one tensor's bytes at a time (`close()` closes the descriptor).
 *
 * @example
 * const file = fileRangeReader('model/model.safetensors');
 * const first8 = file.read(0, 8);
 * file.close();
 */
export function fileRangeReader(path: string): RangeReader {
  const fd = openSync(path, 'r');
  let open = true;
  const size = fstatSync(fd).size;
  return {
    size,
    read(offset: number, length: number): Uint8Array {
      if (!open) throw new Error(`${path}: read after close`);
      const out = new Uint8Array(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, out, got, length - got, offset + got);
        if (n === 0) break; // end of file: the caller reports the short read
        got += n;
      }
      return got === length ? out : out.subarray(0, got);
    },
    close(): void {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Options of `fromPretrained` (the `HubDirOptions` apply when it is given a Hub id). */
export interface FromPretrainedOptions extends HubDirOptions, FromFilesOptions {
  /** Device to move the model to (the CPU by default). */
  device?: Device;
  /**
   * Quantize the frozen base (QLoRA) while the weights stream in: `'nf4'` / `'int8'` (shorthand
   * for `{ bits }`) or `QuantizeModelOptions`. Every Linear/Conv1D becomes a `QuantizedLinear`
   * on `device` as its tensor is read (decoded to float32 alone, quantized on the host, then
   * uploaded), so neither the host nor the device ever holds the float32 model; the codes are
   * those of loading in float32 then `quantizeModel`. `skip` defaults to `['lm_head']`.
   */
  quantize?: QuantizeModelOptions | QuantFormat;
  /**
   * `'f16'` / `'bf16'` keep the base's Linear / Conv1D weights and embedding tables in 16 bits
   * (a tied head reads the same table), loaded tensor by tensor without random init
   * (`FromFilesOptions.dtype`); not with `quantize`.
   */
  dtype?: LoadDType;
  /** Called after each tensor is loaded (`FromFilesOptions.onLoadProgress`). */
  onLoadProgress?: (progress: LoadProgress) => void;
}

/**
 * A GPT-2 from a Hugging Face style directory (`config.json`, `model.safetensors`) or a Hub id
 * (downloaded into the cache, see `hubSnapshotDir`), built on `device` and streamed tensor by
 * tensor from the file (its header, then one tensor's byte range at a time: the file is never
 * read whole), its base kept in 16 bits with `dtype` or quantized as it loads with `quantize`
 * (`AutoModelForCausalLM.fromFiles` says what the load holds). A config without `model_type` is
 * GPT-2's.
 *
 * @example
 * const model = await fromPretrained('checkpoints/gpt2', { device: 'webgpu' });
 * const qlora = await fromPretrained('checkpoints/gpt2', { device: 'webgpu', quantize: 'nf4' });
 * const blocks = await fromPretrained('checkpoints/gpt2', { quantize: { bits: 'int8', blockSize: 'channel' } });
 * const half = await fromPretrained('checkpoints/gpt2', { dtype: 'f16' }); // base and tied wte in f16
 */
export async function fromPretrained(
  dirOrHubId: string,
  options: FromPretrainedOptions = {},
): Promise<GPT2LMHeadModel> {
  const model = await AutoModelForCausalLM.fromPretrained(dirOrHubId, { defaultType: 'gpt2', ...options });
  if (!(model instanceof GPT2LMHeadModel)) {
    model.dispose();
    throw new Error(
      `fromPretrained: ${dirOrHubId} holds a ${model.config.model_type} model, not GPT-2: load it with AutoModelForCausalLM.fromPretrained`,
    );
  }
  return model;
}

/**
 * Writes `config.json` and `model.safetensors` into `dir`, and a tokenizer: lowrank's spec as
 * `tokenizer.json` (`tokenizer`), or the HF tokenizer files copied from another directory
 * (`tokenizerFrom`).
 *
 * @example
 * await savePretrained(model, 'out/my-gpt2', { tokenizer: { type: 'gpt2' } });
 * await savePretrained(llama, 'out/merged', { tokenizerFrom: 'models/smollm2' });
 */
export async function savePretrained(
  model: GPT2LMHeadModel | LlamaForCausalLM,
  dir: string,
  options: { tokenizer?: TokenizerSpec; tokenizerFrom?: string } = {},
): Promise<{
  /** Size of the written `model.safetensors`. */
  bytes: number;
}> {
  // their codes are non-persistent buffers: the file would lack those weights
  const quantized = model
    .namedModules()
    .find(([, m]) => m instanceof QuantizedLinear || m instanceof QuantizedEmbedding);
  if (quantized)
    throw new Error(
      `savePretrained: '${quantized[0]}' is quantized (${(quantized[1] as QuantizedLinear | QuantizedEmbedding).format}); a checkpoint holds float weights: dequantizeModel(model) or mergeAndUnload({ dtype: 'f32' }) first`,
    );
  mkdirSync(dir, { recursive: true });
  let st: Uint8Array;
  if (model instanceof GPT2LMHeadModel) {
    writeFileSync(join(dir, 'config.json'), gpt2ConfigJSON(model));
    st = await gpt2ToSafetensors(model);
  } else {
    const config = { architectures: ['LlamaForCausalLM'], ...model.rawConfig };
    writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    st = await stateDictToSafetensors(model.stateDict(), { format: 'pt' });
  }
  writeFileSync(join(dir, 'model.safetensors'), st);
  if (options.tokenizer) writeFileSync(join(dir, 'tokenizer.json'), `${JSON.stringify(options.tokenizer)}\n`);
  if (options.tokenizerFrom) {
    for (const f of HF_TOKENIZER_FILES) {
      const src = join(options.tokenizerFrom, f);
      if (existsSync(src)) copyFileSync(src, join(dir, f));
    }
  }
  return { bytes: st.length };
}

/**
 * `AutoModelForCausalLM` with `fromPretrained(dir)`: the class comes from `config.json`'s
 * `model_type` (gpt2, llama, qwen2, mistral); weights from `model.safetensors` or the shards of
 * `model.safetensors.index.json`.
 */
export class AutoModelForCausalLM extends AutoModelFromFiles {
  /**
   * The model in a Hugging Face directory, or of a Hub id (`org/name`, when no such directory
   * exists: downloaded into the cache, or found there; `revision`, `cache`, `endpoint`,
   * `onProgress`), built on `device` and streamed tensor by tensor from its files (the header,
   * then one tensor's byte range at a time: neither the file nor, with `quantize`, the float32
   * base is ever held whole; see `fromFiles`). `model.nameOrPath` is set to `dirOrHubId`.
   *
   * @example
   * const model = await AutoModelForCausalLM.fromPretrained('models/SmolLM2-135M', { device: 'webgpu' });
   * const hub = await AutoModelForCausalLM.fromPretrained('HuggingFaceTB/SmolLM2-135M', { revision: 'main', onProgress: console.log });
   * const qlora = await AutoModelForCausalLM.fromPretrained('models/SmolLM2-135M', { device: 'webgpu', quantize: 'nf4' });
   */
  static async fromPretrained(
    dirOrHubId: string,
    options: FromPretrainedOptions = {},
  ): Promise<AutoCausalLM> {
    const dir = await modelDir(dirOrHubId, options);
    // weights by byte range (the header, then each tensor when the load reaches it), never the
    // whole file; the JSON files whole
    const read = async (name: string): Promise<Uint8Array | RangeReader | null> => {
      const path = join(dir, name);
      if (!existsSync(path)) return null;
      return name.endsWith('.safetensors') ? fileRangeReader(path) : new Uint8Array(readFileSync(path));
    };
    const model = await AutoModelFromFiles.fromFiles(read, options);
    model.nameOrPath = dirOrHubId;
    return model;
  }
}

/**
 * The model directory for `fromPretrained`: `dirOrHubId` itself when it is a directory, else,
 * when it looks like `org/name`, the Hub snapshot's folder (downloaded, or found in the cache).
 *
 * @example
 * const dir = await modelDir('HuggingFaceTB/SmolLM2-135M'); // …/models--HuggingFaceTB--SmolLM2-135M/snapshots/<commit>
 */
export async function modelDir(dirOrHubId: string, options: HubDirOptions = {}): Promise<string> {
  if (existsSync(dirOrHubId) && statSync(dirOrHubId).isDirectory()) return dirOrHubId;
  if (isHubId(dirOrHubId)) return hubSnapshotDir(dirOrHubId, options);
  throw new Error(`model directory not found: ${dirOrHubId} (nor is it a Hub id of the form org/name)`);
}

/**
 * The HF tokenizer of a directory: `tokenizer.json`, with `tokenizer_config.json` and
 * `chat_template.jinja` when present.
 *
 * @example
 * const tok = loadHFTokenizer('models/SmolLM2-135M');
 * tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
 */
export function loadHFTokenizer(dir: string): HFTokenizer {
  const tokenizer = readJSON(join(dir, 'tokenizer.json'), 'tokenizer');
  const configPath = join(dir, 'tokenizer_config.json');
  const templatePath = join(dir, 'chat_template.jinja');
  return new HFTokenizer({
    tokenizer,
    config: existsSync(configPath) ? readJSON(configPath, 'tokenizer config') : {},
    chatTemplate: existsSync(templatePath) ? readFileSync(templatePath, 'utf8') : null,
  });
}

/**
 * The tokenizer saved beside a checkpoint: an HF `tokenizer.json` (with its config and chat
 * template), or lowrank's own spec in `tokenizer.json`; else GPT-2's BPE when the vocab is
 * 50257, else bytes.
 *
 * @example
 * const tok = loadTokenizer('checkpoints/gpt2', model.config.vocab_size);
 */
export function loadTokenizer(dir: string, vocabSize: number): Tokenizer {
  const path = join(dir, 'tokenizer.json');
  if (existsSync(path)) {
    const json = readJSON(path, 'tokenizer');
    if (isHFTokenizerJson(json)) return loadHFTokenizer(dir);
    return tokenizerFromSpec(json as unknown as TokenizerSpec);
  }
  if (vocabSize >= 50257) return tokenizerFromSpec({ type: 'gpt2' });
  if (vocabSize === 256) return tokenizerFromSpec({ type: 'byte' });
  throw new Error(`no tokenizer.json in ${dir} and vocab_size ${vocabSize} is neither GPT-2's nor bytes'`);
}
