/**
 * Node-only helpers (files): `import { fromPretrained } from '@lowrank/models/node'`.
 *
 * @module @lowrank/models/node
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '@lowrank/tensor';
import type { GPT2LMHeadModel } from './gpt2.js';
import { gpt2ConfigJSON, gpt2FromSafetensors, gpt2ToSafetensors } from './hf.js';
import { type Tokenizer, type TokenizerSpec, tokenizerFromSpec } from './tokenizer.js';

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

/**
 * A GPT-2 from a Hugging Face style directory (`config.json`, `model.safetensors`), moved to
 * `device` when given.
 *
 * @example
 * const model = await fromPretrained('checkpoints/gpt2', { device: 'webgpu' });
 */
export async function fromPretrained(
  dir: string,
  options: { device?: Device } = {},
): Promise<GPT2LMHeadModel> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`model directory not found: ${dir}`);
  const config = readJSON(join(dir, 'config.json'), 'model config');
  const model = gpt2FromSafetensors(config, readBytes(join(dir, 'model.safetensors'), 'model weights'));
  if (options.device && options.device !== 'cpu') await model.to(options.device);
  return model;
}

/**
 * Writes `config.json` and `model.safetensors` (and `tokenizer.json` when given) into `dir`.
 *
 * @example
 * await savePretrained(model, 'out/my-gpt2', { tokenizer: { type: 'gpt2' } });
 */
export async function savePretrained(
  model: GPT2LMHeadModel,
  dir: string,
  options: { tokenizer?: TokenizerSpec } = {},
): Promise<{
  /** Size of the written `model.safetensors`. */
  bytes: number;
}> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), gpt2ConfigJSON(model));
  const st = await gpt2ToSafetensors(model);
  writeFileSync(join(dir, 'model.safetensors'), st);
  if (options.tokenizer) writeFileSync(join(dir, 'tokenizer.json'), `${JSON.stringify(options.tokenizer)}\n`);
  return { bytes: st.length };
}

/**
 * The tokenizer saved beside a checkpoint (`tokenizer.json`), else GPT-2's BPE when the vocab is 50257, else bytes.
 *
 * @example
 * const tok = loadTokenizer('checkpoints/gpt2', model.config.vocab_size);
 */
export function loadTokenizer(dir: string, vocabSize: number): Tokenizer {
  const path = join(dir, 'tokenizer.json');
  if (existsSync(path)) return tokenizerFromSpec(readJSON(path, 'tokenizer') as unknown as TokenizerSpec);
  if (vocabSize >= 50257) return tokenizerFromSpec({ type: 'gpt2' });
  if (vocabSize === 256) return tokenizerFromSpec({ type: 'byte' });
  throw new Error(`no tokenizer.json in ${dir} and vocab_size ${vocabSize} is neither GPT-2's nor bytes'`);
}
