/**
 * @lowrank/lora/node — PEFT adapter directories on disk (Node only; browsers use
 * `serializeAdapter` / `loadAdapterFromBytes` from `@lowrank/lora`).
 *
 * @example
 * import { saveAdapter, loadAdapter } from '@lowrank/lora/node';
 * await saveAdapter(lora, 'out/my-adapter');          // adapter_config.json + adapter_model.safetensors
 * const handle = await loadAdapter(gpt, 'out/my-adapter');
 *
 * @module @lowrank/lora/node
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Module } from '@lowrank/nn';
import { type ImportOptions, loadAdapterFromBytes, serializeAdapter } from './adapter-io.js';
import type { LoraModel } from './model.js';

/** PEFT's config file name in an adapter directory. */
export const CONFIG_NAME = 'adapter_config.json';
/** PEFT's weights file name in an adapter directory. */
export const WEIGHTS_NAME = 'adapter_model.safetensors';

/** What `saveAdapter` wrote. */
export interface SavedAdapter {
  /** The directory written (a subfolder named after the adapter unless it is 'default', as PEFT). */
  dir: string;
  /** Size of `adapter_config.json`. */
  configBytes: number;
  /** Size of `adapter_model.safetensors`. */
  weightsBytes: number;
}

/**
 * Writes the adapter in PEFT's format.
 *
 * @example
 * const { dir, weightsBytes } = await saveAdapter(lora, 'out/e2e-adapter'); // loads with PeftModel.from_pretrained
 */
export async function saveAdapter(
  handle: LoraModel,
  dir: string,
  adapterName = 'default',
): Promise<SavedAdapter> {
  const target = adapterName === 'default' ? dir : join(dir, adapterName);
  const { configJson, safetensors } = await serializeAdapter(handle, adapterName);
  await mkdir(target, { recursive: true });
  await writeFile(join(target, CONFIG_NAME), configJson);
  await writeFile(join(target, WEIGHTS_NAME), safetensors);
  return { dir: target, configBytes: Buffer.byteLength(configJson), weightsBytes: safetensors.byteLength };
}

async function readOrExplain(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      `loadAdapter: cannot read ${what} '${path}'${code === 'ENOENT' ? ' (no such file)' : `: ${(e as Error).message}`}`,
    );
  }
}

/**
 * Loads a PEFT adapter directory into `model` (applying LoRA when it has none).
 *
 * @example
 * const handle = await loadAdapter(gpt, 'out/e2e-adapter'); // applies LoRA when the model has none
 */
export async function loadAdapter<M extends Module>(
  model: M,
  dir: string,
  options: ImportOptions = {},
): Promise<LoraModel<M>> {
  const s = await stat(dir).catch(() => null);
  if (!s?.isDirectory()) throw new Error(`loadAdapter: '${dir}' is not a directory`);
  const config = await readOrExplain(join(dir, CONFIG_NAME), 'the adapter config');
  const weights = await readOrExplain(join(dir, WEIGHTS_NAME), 'the adapter weights');
  const bytes = new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength);
  return loadAdapterFromBytes(model, config.toString('utf8'), bytes, options);
}
