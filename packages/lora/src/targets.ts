import { Conv1D, Embedding, Linear, type Module, QuantizedLinear } from '@lowrank/nn';
import {
  LoraConfigError,
  layerIndex,
  nameTargeted,
  patternValue,
  type ResolvedLoraConfig,
  suffixMatches,
} from './config.js';
import { LoraLayer } from './layers/base.js';

export type TargetKind = 'linear' | 'conv1d' | 'embedding';

export interface Target {
  name: string;
  module: Module;
  kind: TargetKind;
  /** Slices to adapt for a fused projection (config.fusedSlices), else null. */
  fused: readonly boolean[] | null;
}

export function kindOf(m: Module): TargetKind | null {
  // a quantized base keeps the kind of the layer it replaced (adapters stay PEFT's fan_in_fan_out)
  if (m instanceof QuantizedLinear) return m.fanInFanOut ? 'conv1d' : 'linear';
  if (m instanceof Linear) return 'linear';
  if (m instanceof Conv1D) return 'conv1d';
  if (m instanceof Embedding) return 'embedding';
  return null;
}

/** The output head that 'all-linear' leaves out (as PEFT leaves out the output embeddings). */
const OUTPUT_HEAD = /(^|\.)lm_head$/;

/**
 * Modules a config targets, in model order. Already-wrapped layers count as their base layer.
 * Throws when nothing matches (naming the targets) or when a matched module is not a supported
 * layer (Linear, Conv1D, Embedding).
 */
export function findTargets(model: Module, config: ResolvedLoraConfig): Target[] {
  const out: Target[] = [];
  const unsupported: string[] = [];
  const insideLora = new Set<Module>();
  for (const [name, m] of model.namedModules()) {
    if (name === '' || insideLora.has(m)) continue;
    const base = m instanceof LoraLayer ? m.base_layer : m;
    if (m instanceof LoraLayer) for (const sub of m.modules()) insideLora.add(sub);
    const kind = kindOf(base);
    if (config.targetModules === 'all-linear') {
      if ((kind !== 'linear' && kind !== 'conv1d') || OUTPUT_HEAD.test(name)) continue;
      if (config.modulesToSave.some((k) => suffixMatches(k, name))) continue;
    }
    if (!nameTargeted(config, name, base)) continue;
    if (config.layersToTransform) {
      const idx = layerIndex(config, name);
      if (idx === null || !config.layersToTransform.includes(idx)) continue;
    }
    if (!kind) {
      unsupported.push(`${name} (${base.constructor.name})`);
      continue;
    }
    const fused = patternValue(config.fusedSlices, name) ?? null;
    if (fused && kind === 'embedding')
      throw new LoraConfigError(`LoraConfig: fusedSlices cannot apply to the Embedding '${name}'`);
    out.push({ name, module: base, kind, fused });
  }
  if (unsupported.length > 0) {
    throw new LoraConfigError(
      `LoraConfig: target modules matched layers LoRA does not support: ${unsupported.join(', ')} (supported: Linear, Conv1D, Embedding)`,
    );
  }
  if (out.length === 0) {
    const t = config.targetModules;
    const shown = Array.isArray(t)
      ? `[${t.join(', ')}]`
      : t instanceof RegExp
        ? String(t)
        : typeof t === 'function'
          ? 'the predicate'
          : `'${t}'`;
    const leaves = model
      .namedModules()
      .filter(([n, m]) => n !== '' && kindOf(m))
      .map(([n]) => n.split('.').pop())
      .filter((n, i, a) => a.indexOf(n) === i)
      .slice(0, 12);
    const layers = config.layersToTransform ? ` in layers [${config.layersToTransform.join(', ')}]` : '';
    throw new LoraConfigError(
      `LoraConfig: Target modules ${shown} not found in the base model${layers} (its Linear/Conv1D/Embedding names end in: ${leaves.join(', ') || 'none'})`,
    );
  }
  return out;
}
