import { serializeAdapter } from './adapter-io.js';
import type { LoraModel } from './model.js';
import { trainableParameters } from './model.js';

/** What `trainingFootprint` measures: LoRA's costs next to full fine-tuning's. */
export interface Footprint {
  /** Parameter elements that train (A, B and any `modulesToSave`). */
  trainableParams: number;
  /** All parameter elements. */
  totalParams: number;
  /** Optimizer state: measured (`optimizer.stateBytes()` after a step) or statesPerParam·4 bytes per trainable value. */
  optimizerStateBytes: number;
  /** The same optimizer on every base parameter (full fine-tuning): statesPerParam·4 bytes per value. */
  fullOptimizerStateBytes: number;
  /** adapter_model.safetensors + adapter_config.json, as `saveAdapter` writes them. */
  adapterFileBytes: number;
  /** A full checkpoint's tensor payload (every non-LoRA parameter in float32). */
  fullCheckpointBytes: number;
  /** A few lines comparing the two, for logs. */
  toString(): string;
}

/**
 * What LoRA saves, measured on this model: trainable parameters, optimizer-state bytes and
 * checkpoint size against full fine-tuning (the paper's 350 GB → 35 MB, at any scale).
 *
 * @example
 * const opt = new AdamW(lora.trainableParameters());
 * // … one step …
 * console.log(String(await trainingFootprint(lora, { optimizer: opt })));
 */
export async function trainingFootprint(
  handle: LoraModel,
  options: { optimizer?: { stateBytes(): number }; statesPerParam?: number; adapterName?: string } = {},
): Promise<Footprint> {
  const states = options.statesPerParam ?? 2; // Adam/AdamW: exp_avg and exp_avg_sq
  const report = trainableParameters(handle);
  const baseParams = handle.model
    .namedParameters()
    .filter(([n]) => !/(^|\.)lora_/.test(n))
    .reduce((s, [, p]) => s + p.size, 0);
  const { configJson, safetensors } = await serializeAdapter(
    handle,
    options.adapterName ?? handle.activeAdapters[0],
  );
  const out = {
    trainableParams: report.trainable,
    totalParams: report.total,
    optimizerStateBytes: options.optimizer ? options.optimizer.stateBytes() : states * 4 * report.trainable,
    fullOptimizerStateBytes: states * 4 * baseParams,
    adapterFileBytes: safetensors.byteLength + new TextEncoder().encode(configJson).byteLength,
    fullCheckpointBytes: 4 * baseParams,
  };
  const kb = (n: number): string => `${(n / 1024).toFixed(1)} KiB`;
  const ratio = (a: number, b: number): string => `${((100 * a) / b).toFixed(2)}%`;
  return {
    ...out,
    toString: () =>
      [
        String(report),
        `optimizer state: ${kb(out.optimizerStateBytes)} (LoRA) vs ${kb(out.fullOptimizerStateBytes)} (full fine-tuning) = ${ratio(out.optimizerStateBytes, out.fullOptimizerStateBytes)}`,
        `checkpoint: ${kb(out.adapterFileBytes)} (adapter) vs ${kb(out.fullCheckpointBytes)} (full model) = ${ratio(out.adapterFileBytes, out.fullCheckpointBytes)}`,
      ].join('\n'),
  };
}
