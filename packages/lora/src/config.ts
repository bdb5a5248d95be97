/**
 * LoRA configuration: PEFT's `LoraConfig` with camelCase names, validated once into a resolved form.
 */

/** Which modules to adapt. A list: exact names or name suffixes ("c_attn" matches
 * "transformer.h.0.attn.c_attn"); a string: a regex that must match the whole name; a RegExp
 * (tested as given); a predicate; or 'all-linear' (every Linear/Conv1D except the output head). */
export type TargetModules =
  | readonly string[]
  | string
  | RegExp
  | ((name: string, module: unknown) => boolean)
  | 'all-linear';

/** Which biases train alongside the adapters (PEFT's `bias`). */
export type LoraBias = 'none' | 'all' | 'lora_only';

/**
 * A LoRA configuration: PEFT's `LoraConfig` fields in camelCase. Only `targetModules` is required.
 *
 * @example
 * const config: LoraConfig = { r: 8, loraAlpha: 16, loraDropout: 0.05, targetModules: ['c_attn'] };
 */
export interface LoraConfig {
  /** Rank (default 8, as PEFT). */
  r?: number;
  /** α; the LoRA path is scaled by α/r (α/√r with `useRslora`). Default 8, as PEFT. */
  loraAlpha?: number;
  /** Dropout probability on the LoRA path's input only (default 0). */
  loraDropout?: number;
  /** Modules to adapt (required). */
  targetModules: TargetModules;
  /** Names (suffix match) excluded even when targeted. */
  excludeModules?: readonly string[];
  /** Which biases train: none, all (every parameter named *bias*), or only those of adapted layers. */
  bias?: LoraBias;
  /** The base weights are stored [in, out] (GPT-2's Conv1D). Turned on automatically for Conv1D. */
  fanInFanOut?: boolean;
  /** true: A kaiming-uniform (a = √5), B zeros (PEFT's default); 'gaussian': A ~ N(0, 1/r), B zeros;
   * false: A and B random (ΔW ≠ 0; for tests). */
  initLoraWeights?: boolean | 'gaussian';
  /** Scale by α/√r instead of α/r (rank-stabilized LoRA). */
  useRslora?: boolean;
  /** Modules (suffix match) trained in full and saved with the adapter (e.g. a classifier head). */
  modulesToSave?: readonly string[];
  /** Per-module rank: keys are regexes matched against the end of the module name (like PEFT). */
  rankPattern?: Readonly<Record<string, number>>;
  /** Per-module α, keyed like `rankPattern`. */
  alphaPattern?: Readonly<Record<string, number>>;
  /** Only adapt layers with these indices (the number after `layersPattern` in the name). */
  layersToTransform?: number | readonly number[];
  /** The name segment before the layer index (default: layers, h, blocks, layer, block). */
  layersPattern?: string | readonly string[];
  /** Fused projections (GPT-2's c_attn = [q|k|v]): adapt only some slices of the output, e.g.
   * `{ c_attn: [true, false, true] }` for q and v (loralib's `enable_lora`). Keys match like
   * `rankPattern`; the output is split into as many equal slices as the array has entries. */
  fusedSlices?: Readonly<Record<string, readonly boolean[]>>;
  /** Seed for the A/B initialisation (default: the global generator). */
  seed?: number;
}

/** A `LoraConfig` after `resolveConfig`: validated, with every default filled in. */
export interface ResolvedLoraConfig {
  /** Rank. */
  r: number;
  /** α (the LoRA path is scaled by α/r, or α/√r with `useRslora`). */
  loraAlpha: number;
  /** Dropout probability on the LoRA path's input. */
  loraDropout: number;
  /** Modules to adapt. */
  targetModules: TargetModules;
  /** Names (suffix match) excluded even when targeted. */
  excludeModules: readonly string[];
  /** Which biases train. */
  bias: LoraBias;
  /** Base weights stored [in, out] (GPT-2's Conv1D). */
  fanInFanOut: boolean;
  /** How A and B are initialised. */
  initLoraWeights: boolean | 'gaussian';
  /** Rank-stabilised scaling α/√r. */
  useRslora: boolean;
  /** Modules trained in full and saved with the adapter. */
  modulesToSave: readonly string[];
  /** Per-module rank overrides. */
  rankPattern: Readonly<Record<string, number>>;
  /** Per-module α overrides. */
  alphaPattern: Readonly<Record<string, number>>;
  /** Layer indices to adapt, or null for all. */
  layersToTransform: readonly number[] | null;
  /** Name segments before a layer index. */
  layersPattern: readonly string[];
  /** Which output slices of fused projections are adapted. */
  fusedSlices: Readonly<Record<string, readonly boolean[]>>;
  /** Seed for the A/B initialisation (undefined: the global generator). */
  seed: number | undefined;
}

/** Thrown for an invalid LoRA config; the message names the field and the value that came. */
export class LoraConfigError extends Error {
  /** Always 'LoraConfigError'. */
  override name = 'LoraConfigError';
}

const KNOWN_KEYS = new Set([
  'r',
  'loraAlpha',
  'loraDropout',
  'targetModules',
  'excludeModules',
  'bias',
  'fanInFanOut',
  'initLoraWeights',
  'useRslora',
  'modulesToSave',
  'rankPattern',
  'alphaPattern',
  'layersToTransform',
  'layersPattern',
  'fusedSlices',
  'seed',
]);

function fail(message: string): never {
  throw new LoraConfigError(`LoraConfig: ${message}`);
}

function checkRank(what: string, r: unknown): number {
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0)
    fail(`${what} must be a positive integer, got ${String(r)}`);
  return r;
}

function checkAlpha(what: string, a: unknown): number {
  if (typeof a !== 'number' || !Number.isFinite(a)) fail(`${what} must be a finite number, got ${String(a)}`);
  return a;
}

/**
 * Validates a config and fills PEFT's defaults. Errors name the field and the value that came.
 *
 * @example
 * resolveConfig({ targetModules: ['c_attn'] }).r; // 8 (PEFT's default)
 */
export function resolveConfig(config: LoraConfig): ResolvedLoraConfig {
  if (config === null || typeof config !== 'object') fail(`expected an object, got ${String(config)}`);
  for (const key of Object.keys(config)) {
    if (!KNOWN_KEYS.has(key)) fail(`unknown option '${key}' (PEFT's snake_case names are camelCase here)`);
  }
  const r = checkRank('r', config.r ?? 8);
  const loraAlpha = checkAlpha('loraAlpha', config.loraAlpha ?? 8);
  const loraDropout = config.loraDropout ?? 0;
  if (typeof loraDropout !== 'number' || !(loraDropout >= 0 && loraDropout < 1)) {
    fail(`loraDropout must be in [0, 1), got ${String(loraDropout)}`);
  }
  const t = config.targetModules;
  if (t === undefined || t === null)
    fail('targetModules is required (e.g. ["q_proj", "v_proj"] or "all-linear")');
  if (Array.isArray(t)) {
    if (t.length === 0) fail('targetModules is an empty list');
    for (const name of t)
      if (typeof name !== 'string' || name === '')
        fail(`targetModules entries must be non-empty strings, got ${String(name)}`);
  } else if (typeof t === 'string') {
    if (t !== 'all-linear') {
      try {
        new RegExp(t);
      } catch (e) {
        fail(`targetModules '${t}' is not a valid regex: ${(e as Error).message}`);
      }
    }
  } else if (!(t instanceof RegExp) && typeof t !== 'function') {
    fail(
      `targetModules must be a list, a regex string, a RegExp, a function or 'all-linear', got ${typeof t}`,
    );
  }
  const bias = config.bias ?? 'none';
  if (bias !== 'none' && bias !== 'all' && bias !== 'lora_only')
    fail(`bias must be 'none', 'all' or 'lora_only', got '${String(bias)}'`);
  const init = config.initLoraWeights ?? true;
  if (init !== true && init !== false && init !== 'gaussian')
    fail(`initLoraWeights must be true, false or 'gaussian', got ${String(init)}`);
  const rankPattern = { ...(config.rankPattern ?? {}) };
  for (const [k, v] of Object.entries(rankPattern)) checkRank(`rankPattern['${k}']`, v);
  const alphaPattern = { ...(config.alphaPattern ?? {}) };
  for (const [k, v] of Object.entries(alphaPattern)) checkAlpha(`alphaPattern['${k}']`, v);
  const ltt = config.layersToTransform;
  const layers = ltt === undefined || ltt === null ? null : typeof ltt === 'number' ? [ltt] : [...ltt];
  for (const l of layers ?? [])
    if (!Number.isInteger(l) || l < 0)
      fail(`layersToTransform entries must be non-negative integers, got ${l}`);
  const lp = config.layersPattern;
  const layersPattern =
    lp === undefined ? ['layers', 'h', 'blocks', 'layer', 'block'] : typeof lp === 'string' ? [lp] : [...lp];
  const fusedSlices = { ...(config.fusedSlices ?? {}) };
  for (const [k, v] of Object.entries(fusedSlices)) {
    if (!Array.isArray(v) || v.length < 1 || !v.some(Boolean))
      fail(`fusedSlices['${k}'] must be a list of booleans with at least one true, got ${JSON.stringify(v)}`);
  }
  return {
    r,
    loraAlpha,
    loraDropout,
    targetModules: t,
    excludeModules: [...(config.excludeModules ?? [])],
    bias,
    fanInFanOut: config.fanInFanOut ?? false,
    initLoraWeights: init,
    useRslora: config.useRslora ?? false,
    modulesToSave: [...(config.modulesToSave ?? [])],
    rankPattern,
    alphaPattern,
    layersToTransform: layers,
    layersPattern,
    fusedSlices,
    seed: config.seed,
  };
}

/**
 * PEFT's pattern match: `key` (a regex) matches the whole name or its end after a dot.
 *
 * @example
 * patternMatches('c_attn', 'transformer.h.0.attn.c_attn'); // true
 * patternMatches('h\\.0\\.attn\\.c_attn', 'transformer.h.1.attn.c_attn'); // false
 */
export function patternMatches(key: string, name: string): boolean {
  return new RegExp(`^(.*\\.)?(${key})$`).test(name);
}

/** The value of the first pattern (in key order) matching `name`, or undefined. */
export function patternValue<T>(patterns: Readonly<Record<string, T>>, name: string): T | undefined {
  for (const [k, v] of Object.entries(patterns)) if (patternMatches(k, name)) return v;
  return undefined;
}

/** Exact-or-suffix match on dotted names ("c_attn" matches "h.0.attn.c_attn", not "xc_attn"). */
export function suffixMatches(key: string, name: string): boolean {
  return name === key || name.endsWith(`.${key}`);
}

/** Whether a module name is targeted (layer filtering and module type are checked by the caller). */
export function nameTargeted(config: ResolvedLoraConfig, name: string, module: unknown): boolean {
  if (config.excludeModules.some((k) => suffixMatches(k, name))) return false;
  const t = config.targetModules;
  if (t === 'all-linear') return true;
  if (typeof t === 'string') return new RegExp(`^(?:${t})$`).test(name);
  if (t instanceof RegExp) return t.test(name);
  if (typeof t === 'function') return t(name, module);
  return t.some((k) => suffixMatches(k, name));
}

/** The layer index in a name like "transformer.h.3.attn.c_attn" (per `layersPattern`), or null. */
export function layerIndex(config: ResolvedLoraConfig, name: string): number | null {
  for (const p of config.layersPattern) {
    const m = new RegExp(`(?:^|\\.)${p}\\.(\\d+)(?:\\.|$)`).exec(name);
    if (m) return Number(m[1]);
  }
  return null;
}

/** Rank, α and scaling for one module, honouring rankPattern/alphaPattern and rsLoRA. */
export function moduleHyper(
  config: ResolvedLoraConfig,
  name: string,
): { r: number; alpha: number; scaling: number } {
  const r = patternValue(config.rankPattern, name) ?? config.r;
  const alpha = patternValue(config.alphaPattern, name) ?? config.loraAlpha;
  return { r, alpha, scaling: config.useRslora ? alpha / Math.sqrt(r) : alpha / r };
}
