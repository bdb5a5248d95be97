import type { LoraConfig, ResolvedLoraConfig } from './config.js';

/**
 * `adapter_config.json` as PEFT writes and reads it (snake_case keys).
 * Keys PEFT knows and we do not use load silently when they hold their default (null, false, {});
 * keys we have never heard of (newer PEFT) load with a warning; options that would change the
 * computation and that we do not implement (DoRA, target_parameters, …) are refused.
 */
export type PeftConfigJson = Record<string, unknown>;

/** camelCase option ↔ PEFT key, for the options we implement. */
const MAPPED: Record<string, keyof LoraConfig> = {
  r: 'r',
  lora_alpha: 'loraAlpha',
  lora_dropout: 'loraDropout',
  target_modules: 'targetModules',
  exclude_modules: 'excludeModules',
  bias: 'bias',
  fan_in_fan_out: 'fanInFanOut',
  init_lora_weights: 'initLoraWeights',
  use_rslora: 'useRslora',
  modules_to_save: 'modulesToSave',
  rank_pattern: 'rankPattern',
  alpha_pattern: 'alphaPattern',
  layers_to_transform: 'layersToTransform',
  layers_pattern: 'layersPattern',
};

/** Metadata keys: kept as they are, no effect on the computation. */
const METADATA = new Set([
  'peft_type',
  'peft_version',
  'task_type',
  'inference_mode',
  'base_model_name_or_path',
  'revision',
  'auto_mapping',
  'megatron_core',
  'qalora_group_size',
  'ensure_weight_tying',
]);

/** PEFT options we do not implement; fine while they hold one of their "off" values. */
const OFF_VALUES: Record<string, readonly unknown[]> = {
  use_dora: [false, null],
  lora_bias: [false, null],
  use_qalora: [false, null],
  use_bdlora: [false, null],
  target_parameters: [null],
  layer_replication: [null],
  trainable_token_indices: [null],
  alora_invocation_tokens: [null],
  megatron_config: [null],
  loftq_config: [null, {}],
  eva_config: [null],
  corda_config: [null],
  arrow_config: [null],
  kasa_config: [null],
  lora_ga_config: [null],
  monteclora_config: [null],
  velora_config: [null],
};

function isOff(value: unknown, offs: readonly unknown[]): boolean {
  return offs.some((o) =>
    o !== null && typeof o === 'object' ? JSON.stringify(o) === JSON.stringify(value) : o === value,
  );
}

/** What `fromPeftConfig` returns. */
export interface ParsedPeftConfig {
  /** The options, with our camelCase names. */
  config: LoraConfig;
  /** One line per key we did not recognise. */
  warnings: string[];
  /** The metadata keys (peft_version, task_type, …) as found. */
  metadata: Record<string, unknown>;
}

/**
 * Parses an `adapter_config.json` object. Unknown keys give warnings (also passed to `onWarning`,
 * default console.warn); unsupported features that are switched on throw.
 *
 * @example
 * const { config } = fromPeftConfig({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['c_attn'] });
 * config.loraAlpha; // 16
 */
export function fromPeftConfig(
  json: unknown,
  options: { onWarning?: (message: string) => void } = {},
): ParsedPeftConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(
      `adapter_config.json: expected a JSON object, got ${Array.isArray(json) ? 'an array' : String(json)}`,
    );
  }
  const src = json as PeftConfigJson;
  const type = src.peft_type;
  if (type !== undefined && type !== 'LORA') {
    throw new Error(
      `adapter_config.json: peft_type is '${String(type)}'; only 'LORA' adapters are supported`,
    );
  }
  if (src.target_modules === undefined || src.target_modules === null) {
    throw new Error('adapter_config.json: target_modules is missing');
  }
  const config: Record<string, unknown> = {};
  const warnings: string[] = [];
  const metadata: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(src)) {
    const mapped = MAPPED[key];
    if (mapped) {
      if (value !== null) config[mapped] = value;
    } else if (METADATA.has(key)) {
      metadata[key] = value;
    } else if (key in OFF_VALUES) {
      if (!isOff(value, OFF_VALUES[key])) {
        throw new Error(
          `adapter_config.json: '${key}' = ${JSON.stringify(value)} is not supported by lowrank`,
        );
      }
    } else {
      warnings.push(`adapter_config.json: unknown key '${key}' ignored (written by a newer PEFT?)`);
    }
  }
  if (config.loraDropout === undefined) config.loraDropout = 0;
  const warn = options.onWarning ?? ((m: string) => console.warn(m));
  for (const w of warnings) warn(w);
  return { config: config as unknown as LoraConfig, warnings, metadata };
}

/**
 * Writes a PEFT `adapter_config.json` object. `targetModules` is the list to write (function and
 * RegExp targets are saved as the names they matched); `rankPattern`/`alphaPattern` may carry
 * per-module entries added by the layers (fused projections are saved in PEFT's plain form).
 *
 * @example
 * const json = toPeftConfig(resolveConfig(config), { targetModules: ['c_attn'], rankPattern: {}, alphaPattern: {} });
 * json.lora_alpha; // the α of `config`
 */
export function toPeftConfig(
  config: ResolvedLoraConfig,
  resolved: {
    targetModules: readonly string[] | string;
    rankPattern: Record<string, number>;
    alphaPattern: Record<string, number>;
    peftVersion?: string;
    /** `base_model_name_or_path`: the base model's directory or Hub id (default null). */
    baseModelNameOrPath?: string | null;
  },
): PeftConfigJson {
  return {
    peft_type: 'LORA',
    task_type: null,
    r: config.r,
    lora_alpha: config.loraAlpha,
    lora_dropout: config.loraDropout,
    target_modules:
      typeof resolved.targetModules === 'string' ? resolved.targetModules : [...resolved.targetModules],
    exclude_modules: config.excludeModules.length ? [...config.excludeModules] : null,
    bias: config.bias,
    fan_in_fan_out: config.fanInFanOut,
    init_lora_weights: config.initLoraWeights,
    use_rslora: config.useRslora,
    use_dora: false,
    modules_to_save: config.modulesToSave.length ? [...config.modulesToSave] : null,
    rank_pattern: resolved.rankPattern,
    alpha_pattern: resolved.alphaPattern,
    layers_to_transform: config.layersToTransform ? [...config.layersToTransform] : null,
    layers_pattern: config.layersToTransform ? [...config.layersPattern] : null,
    inference_mode: true,
    base_model_name_or_path: resolved.baseModelNameOrPath ?? null,
    revision: null,
    peft_version: resolved.peftVersion ?? '0.21.0',
  };
}
