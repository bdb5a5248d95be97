import { type HostTensor, type Module, parseSafetensors, serializeSafetensors } from '@lowrank/nn';
import { fromTypedArray, OpError, type Tensor, tidy } from '@lowrank/tensor';
import { resolveConfig, suffixMatches } from './config.js';
import { noGrad } from './internal.js';
import { LoraEmbedding } from './layers/embedding.js';
import { LoraFusedLinear } from './layers/fused.js';
import { applyLora, getLoraModel, type LoraModel } from './model.js';
import { fromPeftConfig, type PeftConfigJson, toPeftConfig } from './peft-config.js';

/**
 * PEFT's adapter files without touching a file system (browser-safe): `adapter_config.json` as
 * an object and `adapter_model.safetensors` as tensors by PEFT's keys:
 * `base_model.model.<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r], embeddings
 * `.lora_embedding_A` [r, num] / `.lora_embedding_B` [dim, r] (the adapter name is not in keys).
 * Node helpers that read and write directories live in `@lowrank/lora/node`.
 */
export interface AdapterFiles {
  /** The content of `adapter_config.json`. */
  config: PeftConfigJson;
  /** The content of `adapter_model.safetensors`, by PEFT key. */
  tensors: Record<string, HostTensor>;
}

const PREFIX = 'base_model.model.';

/** The adapter's tensors, by PEFT key, as they live in the model (fused layers expanded). */
function adapterTensors(handle: LoraModel, name: string, use: (key: string, t: Tensor) => void): void {
  const cfg = handle.configs.get(name)!;
  for (const [path, layer] of handle.layers) {
    if (!layer.specs.has(name)) continue;
    const { A, B } = layer.plainFactors(name);
    const [a, b] =
      layer instanceof LoraEmbedding
        ? ['lora_embedding_A', 'lora_embedding_B']
        : ['lora_A.weight', 'lora_B.weight'];
    use(`${PREFIX}${path}.${a}`, A);
    use(`${PREFIX}${path}.${b}`, B);
  }
  for (const [pname, p] of handle.model.namedParameters()) {
    if (/(^|\.)lora_/.test(pname)) continue;
    const parts = pname.split('.');
    const isBias = parts[parts.length - 1].includes('bias');
    const inSave = cfg.modulesToSave.some((k) =>
      parts.some((_, i) => suffixMatches(k, parts.slice(0, i + 1).join('.'))),
    );
    const owner = pname.replace(/\.?base_layer\.[^.]+$/, '');
    const loraBias =
      cfg.bias === 'lora_only' &&
      isBias &&
      owner !== pname &&
      handle.layers.get(owner)?.specs.has(name) === true;
    if (inSave || (cfg.bias === 'all' && isBias) || loraBias) use(`${PREFIX}${pname}`, p);
  }
}

/**
 * The adapter's live parameters by PEFT key (`base_model.model.<module>.lora_A.weight`, …): the
 * tensors themselves, so `.grad` can be compared with PEFT's gradients key by key.
 * Fused-slice layers have no PEFT-shaped parameters and are refused.
 *
 * @example
 * for (const [key, p] of adapterParameters(lora)) expect(await p.grad!.data()).toBeCloseTo(ref[`${key}.grad`]);
 */
export function adapterParameters(handle: LoraModel, adapterName = 'default'): Map<string, Tensor> {
  if (!handle.configs.has(adapterName)) throw new OpError('adapterParameters', `no adapter '${adapterName}'`);
  const out = new Map<string, Tensor>();
  for (const [path, layer] of handle.layers) {
    if (!layer.specs.has(adapterName)) continue;
    if (layer instanceof LoraFusedLinear) {
      throw new OpError(
        'adapterParameters',
        `'${path}' adapts fused slices; its parameters are not in PEFT's shape (use exportAdapter)`,
      );
    }
    const [A, B] = layer.factorParams(adapterName);
    const [a, b] =
      layer instanceof LoraEmbedding
        ? ['lora_embedding_A', 'lora_embedding_B']
        : ['lora_A.weight', 'lora_B.weight'];
    out.set(`${PREFIX}${path}.${a}`, A);
    out.set(`${PREFIX}${path}.${b}`, B);
  }
  return out;
}

/**
 * The adapter as PEFT would save it (config object + host tensors).
 *
 * @example
 * const { config, tensors } = await exportAdapter(lora);
 * Object.keys(tensors)[0]; // "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"
 */
export async function exportAdapter(handle: LoraModel, adapterName = 'default'): Promise<AdapterFiles> {
  const cfg = handle.configs.get(adapterName);
  if (!cfg)
    throw new OpError(
      'exportAdapter',
      `no adapter '${adapterName}' (adapters: ${handle.adapters.join(', ')})`,
    );
  // Fused layers expand their factors into new tensors: keep those, free the intermediates.
  const pending = tidy(() => {
    const list: [string, Tensor][] = [];
    adapterTensors(handle, adapterName, (k, t) => void list.push([k, t]));
    return list;
  });
  const params = new Set(handle.model.parameters());
  const tensors: Record<string, HostTensor> = {};
  try {
    for (const [k, t] of pending) tensors[k] = { dtype: t.dtype, shape: [...t.shape], data: await t.data() };
  } finally {
    for (const [, t] of pending) if (!params.has(t)) t.dispose();
  }
  const rankPattern = { ...cfg.rankPattern };
  const alphaPattern = { ...cfg.alphaPattern };
  for (const [path, layer] of handle.layers) {
    const spec = layer.specs.get(adapterName);
    if (!spec || !(layer instanceof LoraFusedLinear)) continue;
    const rank = layer.enabledSlices.length * spec.r; // PEFT's plain form: one pair of rank e·r
    rankPattern[path] = rank;
    alphaPattern[path] = spec.scaling * (spec.useRslora ? Math.sqrt(rank) : rank);
  }
  const t = cfg.targetModules;
  const targets = handle.targets.get(adapterName)!;
  const written =
    Array.isArray(t) || (typeof t === 'string' && t !== 'all-linear')
      ? (t as readonly string[] | string)
      : t === 'all-linear'
        ? [...new Set(targets.map((p) => p.split('.').pop()!))]
        : targets;
  // PEFT switches fan_in_fan_out on by itself when a target is a Conv1D, and saves it so.
  const conv = [...handle.layers.values()].some(
    (l) => l.specs.has(adapterName) && 'fanInFanOut' in l && l.fanInFanOut === true,
  );
  const saved = { ...cfg, fanInFanOut: cfg.fanInFanOut || conv };
  const baseModelNameOrPath = modelNameOrPath(handle.model);
  return {
    config: toPeftConfig(saved, { targetModules: written, rankPattern, alphaPattern, baseModelNameOrPath }),
    tensors,
  };
}

/**
 * Where a model's weights came from: its `nameOrPath` (the directory or Hub id that
 * `fromPretrained` sets on lowrank's models), or null when it has none.
 *
 * @example
 * modelNameOrPath(await AutoModelForCausalLM.fromPretrained('HuggingFaceTB/SmolLM2-135M')); // 'HuggingFaceTB/SmolLM2-135M'
 */
export function modelNameOrPath(model: Module): string | null {
  const v: unknown = Reflect.get(model, 'nameOrPath');
  return typeof v === 'string' && v !== '' ? v : null;
}

/** A name or path in comparable form: no trailing slash, a Hub cache snapshot folder as its `org/name`. */
function comparableName(s: string): string {
  const t = s.replace(/[\\/]+$/, '').replace(/^\.[\\/]/, '');
  const cached = /(?:^|[\\/])models--([^\\/]+?)--([^\\/]+)[\\/]snapshots[\\/][^\\/]+$/.exec(t);
  return cached ? `${cached[1]}/${cached[2]}` : t;
}

/**
 * The warning for an adapter whose `base_model_name_or_path` names another model than the one it
 * is loaded into, or null when they agree (or either is unknown).
 */
function baseModelMismatch(config: unknown, model: Module): string | null {
  const saved =
    config !== null && typeof config === 'object' ? Reflect.get(config, 'base_model_name_or_path') : null;
  const loaded = modelNameOrPath(model);
  if (typeof saved !== 'string' || saved === '' || loaded === null) return null;
  if (comparableName(saved) === comparableName(loaded)) return null;
  return `loadAdapter: the adapter was trained on '${saved}' (base_model_name_or_path) but the model was loaded from '${loaded}'; it may not fit this base`;
}

/**
 * `adapter_config.json` text and `adapter_model.safetensors` bytes.
 *
 * @example
 * const { configJson, safetensors } = await serializeAdapter(lora); // e.g. offer both as downloads
 */
export async function serializeAdapter(
  handle: LoraModel,
  adapterName = 'default',
): Promise<{
  /** `adapter_config.json` text. */
  configJson: string;
  /** `adapter_model.safetensors` bytes. */
  safetensors: Uint8Array;
}> {
  const { config, tensors } = await exportAdapter(handle, adapterName);
  return {
    configJson: `${JSON.stringify(config, null, 2)}\n`,
    safetensors: serializeSafetensors(tensors, { format: 'pt' }),
  };
}

/** Options of `importAdapter` and `loadAdapterFromBytes`. */
export interface ImportOptions {
  /** Name the adapter gets in the model (default 'default'). */
  adapterName?: string;
  /**
   * Called for each unknown config key, and when `base_model_name_or_path` names another model
   * than the one loaded (its `nameOrPath`) (default console.warn).
   */
  onWarning?: (message: string) => void;
}

/**
 * Adds a PEFT adapter to `model` (applying LoRA first when the model has none) and fills its
 * weights. Every key must name a module of this model and every shape must match; otherwise
 * nothing is added and the error lists each problem.
 *
 * @example
 * const handle = importAdapter(model, { config: JSON.parse(configJson), tensors: parseSafetensors(bytes).tensors });
 */
export function importAdapter<M extends Module>(
  model: M,
  files: { config: unknown; tensors: Record<string, HostTensor> },
  options: ImportOptions = {},
): LoraModel<M> {
  const name = options.adapterName ?? 'default';
  const parsed = fromPeftConfig(files.config, { onWarning: options.onWarning });
  const mismatch = baseModelMismatch(files.config, model);
  if (mismatch) (options.onWarning ?? ((m: string) => console.warn(m)))(mismatch);
  const keys = Object.keys(files.tensors);
  if (keys.length === 0) throw new OpError('loadAdapter', 'adapter_model.safetensors holds no tensors');
  const cfg = resolveConfig({ ...parsed.config, initLoraWeights: true });
  const existing = getLoraModel(model);
  const handle = existing ?? applyLora(model, parsed.config, name);
  if (existing) existing.addResolvedAdapter(name, cfg);
  const expected = new Map<string, Tensor>();
  adapterTensors(handle, name, (k, t) => void expected.set(k, t));
  const problems: string[] = [];
  for (const k of keys) {
    const target = expected.get(k);
    const src = files.tensors[k];
    if (!target) problems.push(`unexpected key ${k} (no such adapted module or parameter in this model)`);
    else if (target.shape.join() !== src.shape.join()) {
      problems.push(
        `${k}: file [${src.shape.join(',')}], model [${target.shape.join(',')}] (different r or layer size)`,
      );
    }
  }
  for (const k of expected.keys())
    if (!(k in files.tensors) && /lora_/.test(k)) problems.push(`missing key ${k}`);
  if (problems.length > 0) {
    if (existing) existing.deleteAdapter(name);
    else handle.unload();
    throw new OpError(
      'loadAdapter',
      `adapter '${name}' does not fit this model:\n  ${problems.slice(0, 20).join('\n  ')}`,
    );
  }
  noGrad(() => {
    for (const k of keys) {
      const src = files.tensors[k];
      const t = fromTypedArray(src.data, src.shape, { dtype: src.dtype, device: expected.get(k)!.device });
      expected.get(k)!.copy_(t);
      t.dispose();
    }
  });
  handle.refreshMixedCache();
  return handle;
}

/**
 * `importAdapter` from the two files' contents.
 *
 * @example
 * const handle = loadAdapterFromBytes(gpt, configJson, safetensorsBytes, { adapterName: 'e2e' });
 * handle.setAdapter('e2e');
 */
export function loadAdapterFromBytes<M extends Module>(
  model: M,
  configJson: string,
  safetensors: Uint8Array,
  options: ImportOptions = {},
): LoraModel<M> {
  let config: unknown;
  try {
    config = JSON.parse(configJson);
  } catch (e) {
    throw new OpError('loadAdapter', `adapter_config.json is not valid JSON: ${(e as Error).message}`);
  }
  return importAdapter(model, { config, tensors: parseSafetensors(safetensors).tensors }, options);
}
