import { type HostTensor, parseSafetensors, stateDictToSafetensors } from '@lowrank/nn';
import { configToJSON, type GPT2Config, gpt2Config } from './config.js';
import { GPT2LMHeadModel } from './gpt2.js';

/**
 * Reading and writing GPT-2 checkpoints in Hugging Face's layout (`config.json` +
 * `model.safetensors`). Pure functions of bytes and JSON; `@lowrank/models/node` adds the files.
 */

/**
 * The weights HF stores transposed relative to `nn.Linear` ([in, out], GPT-2's Conv1D). Our GPT-2
 * uses Conv1D for exactly these, so they load as they are; the list documents the layout.
 */
export const GPT2_CONV1D_WEIGHTS: readonly string[] = [
  'attn.c_attn.weight',
  'attn.c_proj.weight',
  'mlp.c_fc.weight',
  'mlp.c_proj.weight',
];

/** Keys in HF files that are not parameters: old causal-mask buffers and the tied head. */
const NOT_PARAMETERS = [/(^|\.)attn\.bias$/, /(^|\.)attn\.masked_bias$/, /^lm_head\.weight$/];

/**
 * Renames an HF GPT-2 state dict to ours: files of `GPT2Model` have no `transformer.` prefix
 * (the original `gpt2` checkpoint), files of `GPT2LMHeadModel` do; mask buffers and the tied
 * `lm_head.weight` are dropped.
 *
 * @example
 * const keys = gpt2KeysFromHF({ 'wte.weight': w, 'h.0.attn.bias': mask });
 * [...keys.keys()]; // ['transformer.wte.weight'] (the mask buffer is dropped)
 */
export function gpt2KeysFromHF<T>(tensors: Readonly<Record<string, T>>): Map<string, T> {
  const out = new Map<string, T>();
  for (const [key, t] of Object.entries(tensors)) {
    if (NOT_PARAMETERS.some((re) => re.test(key))) continue;
    out.set(key.startsWith('transformer.') ? key : `transformer.${key}`, t);
  }
  return out;
}

/**
 * A GPT-2 from HF `config.json` (parsed) and `model.safetensors` bytes. Every parameter name and
 * shape is checked: a missing, unexpected or mis-shaped key throws, listing all of them.
 *
 * @example
 * const config = JSON.parse(await (await fetch('gpt2/config.json')).text());
 * const bytes = new Uint8Array(await (await fetch('gpt2/model.safetensors')).arrayBuffer());
 * const model = gpt2FromSafetensors(config, bytes);
 */
export function gpt2FromSafetensors(
  config: Record<string, unknown> | GPT2Config,
  bytes: Uint8Array,
): GPT2LMHeadModel {
  const model = new GPT2LMHeadModel(gpt2Config(config));
  loadGPT2Weights(model, bytes);
  return model;
}

/**
 * Loads HF GPT-2 weights (safetensors bytes or parsed tensors) into a model, by name, strictly.
 *
 * @example
 * loadGPT2Weights(model, bytes); // throws listing every missing, unexpected or mis-shaped key
 */
export function loadGPT2Weights(
  model: GPT2LMHeadModel,
  source: Uint8Array | Readonly<Record<string, HostTensor>>,
): void {
  const tensors = source instanceof Uint8Array ? parseSafetensors(source).tensors : source;
  try {
    model.loadStateDict(gpt2KeysFromHF(tensors));
  } catch (e) {
    throw new Error(`GPT-2 checkpoint does not match the config: ${(e as Error).message}`);
  }
}

/**
 * The model as HF's `model.safetensors` (keys `transformer.…`, no `lm_head.weight`, format pt).
 *
 * @example
 * const bytes = await gpt2ToSafetensors(model); // loads in transformers' GPT2LMHeadModel
 */
export async function gpt2ToSafetensors(model: GPT2LMHeadModel): Promise<Uint8Array> {
  return stateDictToSafetensors(model.stateDict(), { format: 'pt' });
}

/**
 * The model's config as HF's `config.json` text.
 *
 * @example
 * JSON.parse(gpt2ConfigJSON(model)).architectures; // ["GPT2LMHeadModel"]
 */
export function gpt2ConfigJSON(model: GPT2LMHeadModel): string {
  return `${JSON.stringify(configToJSON(model.config), null, 2)}\n`;
}
