import {
  type Conv1D,
  dequantizeModel,
  type Embedding,
  type Linear,
  type Module,
  QuantizedLinear,
} from '@lowrank/nn';
import { cat, defaultGenerator, Generator, OpError, type Tensor, tensor, tidy } from '@lowrank/tensor';
import {
  type LoraConfig,
  LoraConfigError,
  moduleHyper,
  type ResolvedLoraConfig,
  resolveConfig,
  suffixMatches,
} from './config.js';
import { noGrad } from './internal.js';
import { type AdapterSpec, LoraLayer, type TensorModule } from './layers/base.js';
import { LoraEmbedding } from './layers/embedding.js';
import { LoraFusedLinear } from './layers/fused.js';
import { LoraLinear } from './layers/linear.js';
import { findTargets, type Target } from './targets.js';

const handles = new WeakMap<Module, LoraModel>();

/** The name PEFT uses in `adapter_names` for "no adapter" (null works too). */
export const BASE_ADAPTER = '__base__';

/** Options of `LoraModel.forward`. */
export interface MixedOptions {
  /** One adapter name per sample (dim 0 of the input); null or '__base__' = the base model. */
  adapterNames?: readonly (string | null)[];
}

/**
 * Injects LoRA into `model` in place: every targeted Linear/Conv1D/Embedding is replaced by a LoRA
 * layer holding adapter `adapterName`, every other parameter is frozen (biases per `config.bias`,
 * `modulesToSave` stay trainable), and a handle is returned. Calling it again on the same model
 * throws; use `handle.addAdapter`.
 *
 * @example
 * const lora = applyLora(gpt, { r: 4, loraAlpha: 32, targetModules: ['c_attn'] });
 * const opt = new AdamW(lora.trainableParameters(), { lr: 2e-4 }); // only A, B
 */
export function applyLora<M extends Module>(
  model: M,
  config: LoraConfig,
  adapterName = 'default',
): LoraModel<M> {
  if (handles.has(model)) {
    throw new OpError('applyLora', 'this model already has LoRA layers; use handle.addAdapter(name, config)');
  }
  const handle = new LoraModel(model);
  handles.set(model, handle);
  try {
    handle.addAdapter(adapterName, config);
  } catch (e) {
    handles.delete(model);
    throw e;
  }
  return handle;
}

/**
 * The handle of a model that went through `applyLora`, or null.
 *
 * @example
 * applyLora(model, { targetModules: ['c_attn'] });
 * getLoraModel(model)?.adapters; // ['default']
 */
export function getLoraModel<M extends Module>(model: M): LoraModel<M> | null {
  return (handles.get(model) as LoraModel<M> | undefined) ?? null;
}

function checkAdapterName(name: string): void {
  if (!/^[^.]+$/.test(name) || name === BASE_ADAPTER) {
    throw new OpError('lora', `invalid adapter name '${name}': non-empty, no '.', not '${BASE_ADAPTER}'`);
  }
}

/** The handle `applyLora` returns: adapters, merging, mixed batches and what trains. */
export class LoraModel<M extends Module = Module> {
  /** The resolved config of each adapter, by name. */
  readonly configs = new Map<string, ResolvedLoraConfig>();
  /** Module paths targeted by each adapter. */
  readonly targets = new Map<string, string[]>();
  #active: string[] = [];

  /** @param model The model LoRA was injected into (modified in place). */
  constructor(readonly model: M) {}

  /** LoRA layers by module path. */
  get layers(): Map<string, LoraLayer> {
    const out = new Map<string, LoraLayer>();
    for (const [name, m] of this.model.namedModules()) if (m instanceof LoraLayer) out.set(name, m);
    return out;
  }
  /** Names of every adapter, in creation order. */
  get adapters(): string[] {
    return [...this.configs.keys()];
  }
  /** Names of the adapters that run in `forward` (and train). */
  get activeAdapters(): string[] {
    return [...this.#active];
  }

  /** Adds an adapter (new layers are wrapped where needed). It is not activated: see `setAdapter`. */
  addAdapter(name: string, config: LoraConfig): this {
    return this.addResolvedAdapter(name, resolveConfig(config));
  }

  /** `addAdapter` with a config already through `resolveConfig` (used by loading and combining). */
  addResolvedAdapter(name: string, cfg: ResolvedLoraConfig): this {
    checkAdapterName(name);
    if (this.configs.has(name)) throw new OpError('lora', `adapter '${name}' already exists`);
    const found = findTargets(this.model, cfg);
    const gen = cfg.seed === undefined ? defaultGenerator() : new Generator(cfg.seed);
    for (const t of found) {
      const layer = this.#wrap(t, cfg);
      const { r, alpha, scaling } = moduleHyper(cfg, t.name);
      const spec: AdapterSpec = { r, alpha, scaling, dropout: cfg.loraDropout, useRslora: cfg.useRslora };
      layer.addAdapter(name, spec, cfg.initLoraWeights, gen);
      if (cfg.seed !== undefined) layer.generator = new Generator(cfg.seed + 1);
    }
    this.configs.set(name, cfg);
    this.targets.set(
      name,
      found.map((t) => t.name),
    );
    if (this.#active.length === 0) this.setAdapter(name);
    else this.#freeze();
    return this;
  }

  #wrap(t: Target, cfg: ResolvedLoraConfig): LoraLayer {
    const existing = this.model.getSubmodule(t.name);
    if (existing instanceof LoraLayer) {
      if (existing instanceof LoraFusedLinear !== (t.fused !== null)) {
        throw new LoraConfigError(
          `LoraConfig: '${t.name}' is already adapted ${t.fused ? 'without' : 'with'} fusedSlices; adapters of one layer must agree`,
        );
      }
      return existing;
    }
    if (cfg.fanInFanOut && t.kind === 'linear')
      console.warn(`lora: fanInFanOut ignored for the Linear '${t.name}' (its weight is [out, in])`);
    const fanInFanOut = t.kind === 'conv1d';
    const layer =
      t.kind === 'embedding'
        ? new LoraEmbedding(t.module as Embedding)
        : t.fused
          ? new LoraFusedLinear(t.module as Linear | Conv1D | QuantizedLinear, fanInFanOut, t.fused)
          : new LoraLinear(t.module as Linear | Conv1D | QuantizedLinear, fanInFanOut);
    layer.training = t.module.training;
    this.model.setSubmodule(t.name, layer);
    return layer;
  }

  /**
   * Combines adapters into a new one (PEFT's `add_weighted_adapter`), not activated:
   * - 'cat': A = [w₁s₁A₁; w₂s₂A₂; …], B = [B₁ B₂ …] (rank Σrᵢ), so ΔW = Σ wᵢ·ΔWᵢ exactly;
   * - 'linear': A = Σ √wᵢ·sᵢ·Aᵢ, B = Σ √wᵢ·Bᵢ (equal ranks; as PEFT, with cross terms between
   *   adapters, so only a single adapter gives exactly w·ΔW; negative w puts the sign on A).
   * The new adapter's scaling is exactly 1 (α = r, rsLoRA off): each source's scaling (α/r or
   * α/√r) is folded into A once, avoiding PEFT's known double rsLoRA scaling.
   */
  addWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    newName: string,
    combinationType: 'linear' | 'cat' = 'cat',
  ): this {
    if (adapters.length === 0 || adapters.length !== weights.length) {
      throw new OpError(
        'addWeightedAdapter',
        `need one weight per adapter, got ${adapters.length} adapters and ${weights.length} weights`,
      );
    }
    if (combinationType !== 'linear' && combinationType !== 'cat') {
      throw new OpError(
        'addWeightedAdapter',
        `combinationType must be 'linear' or 'cat', got '${String(combinationType)}'`,
      );
    }
    for (const a of adapters) this.#require(a);
    for (const w of weights)
      if (!Number.isFinite(w)) throw new OpError('addWeightedAdapter', `weights must be finite, got ${w}`);
    const layers = [...this.layers].filter(([, l]) => adapters.some((a) => l.specs.has(a)));
    const ranks = new Map<string, number>();
    for (const [path, l] of layers) {
      const missing = adapters.filter((a) => !l.specs.has(a));
      if (missing.length)
        throw new OpError(
          'addWeightedAdapter',
          `'${path}' has no adapter ${missing.join(', ')}; combined adapters must target the same modules`,
        );
      const rs = adapters.map((a) => l.specs.get(a)!.r);
      if (combinationType === 'linear' && rs.some((r) => r !== rs[0])) {
        throw new OpError(
          'addWeightedAdapter',
          `'linear' needs equal ranks, got [${rs.join(', ')}] at '${path}'; use 'cat'`,
        );
      }
      ranks.set(path, combinationType === 'cat' ? rs.reduce((x, y) => x + y, 0) : rs[0]);
    }
    const first = this.configs.get(adapters[0])!;
    const r = ranks.get(layers[0][0])!;
    const pattern = (v: (n: number) => number): Record<string, number> =>
      Object.fromEntries(
        [...ranks].filter(([, n]) => n !== r).map(([p, n]) => [p.replace(/\./g, '\\.'), v(n)]),
      );
    const fusedSlices = Object.fromEntries(
      layers
        .filter(([, l]) => l instanceof LoraFusedLinear)
        .map(([p, l]) => [p.replace(/\./g, '\\.'), (l as LoraFusedLinear).enable]),
    );
    const cfg: ResolvedLoraConfig = {
      ...first,
      r,
      loraAlpha: r,
      useRslora: false,
      targetModules: layers.map(([p]) => p),
      excludeModules: [],
      layersToTransform: null,
      rankPattern: pattern((n) => n),
      alphaPattern: pattern((n) => n),
      fusedSlices,
      initLoraWeights: true,
      seed: undefined,
    };
    this.addResolvedAdapter(newName, cfg);
    noGrad(() => {
      for (const [, l] of layers) tidy(() => combineInto(l, adapters, weights, newName, combinationType));
    });
    this.refreshMixedCache();
    return this;
  }

  #require(name: string): void {
    if (!this.configs.has(name)) {
      throw new OpError('lora', `no adapter '${name}' (adapters: ${this.adapters.join(', ') || 'none'})`);
    }
  }

  /** Activates one adapter (or several, summed) and makes only its parameters trainable. */
  setAdapter(names: string | readonly string[]): this {
    const list = typeof names === 'string' ? [names] : [...names];
    for (const n of list) this.#require(n);
    for (const l of this.layers.values()) {
      if (l.merged.size > 0) throw new OpError('lora.setAdapter', 'unmerge() before switching adapters');
      l.activeAdapters = list.filter((n) => l.specs.has(n));
    }
    this.#active = list;
    this.#freeze();
    return this;
  }

  /** Deletes an adapter and its parameters. Deleting the active one leaves no adapter active. */
  deleteAdapter(name: string): this {
    this.#require(name);
    for (const [path, l] of this.layers) {
      if (!l.specs.has(name)) continue;
      l.deleteAdapter(name);
      if (l.specs.size === 0) this.model.setSubmodule(path, l.base_layer);
    }
    this.configs.delete(name);
    this.targets.delete(name);
    this.#active = this.#active.filter((n) => n !== name);
    this.#freeze();
    return this;
  }

  /**
   * Runs `fn` (sync or async) with every adapter switched off (the base model alone), then
   * switches them back on. Refused while an adapter is merged.
   */
  disableAdapters<T>(fn: () => T): T {
    const layers = [...this.layers.values()];
    if (layers.some((l) => l.merged.size > 0)) throw new OpError('lora.disableAdapters', 'unmerge() first');
    for (const l of layers) l.disabled = true;
    const restore = (): void => {
      for (const l of layers) l.disabled = false;
    };
    let result: T;
    try {
      result = fn();
    } catch (e) {
      restore();
      throw e;
    }
    if (result instanceof Promise) return result.finally(restore) as T;
    restore();
    return result;
  }

  /**
   * Runs `fn` with a mixed batch: sample i uses adapter `adapterNames[i]` (null / '__base__' =
   * none). Every LoRA layer gathers each sample's A and B from the adapters stacked once and runs
   * two batched matmuls. Inference only (eval mode), refused while merged. The stacks are cached
   * per layer; they are rebuilt when adapters are added, deleted, loaded or merged — after
   * training an adapter further in place, call `refreshMixedCache()`.
   */
  withAdapterNames<T>(adapterNames: readonly (string | null)[], fn: () => T): T {
    const names = adapterNames.map((n) => (n === BASE_ADAPTER ? null : n));
    for (const n of names) if (n !== null) this.#require(n);
    const distinct = [...new Set(names.filter((n): n is string => n !== null))];
    const layers = [...this.layers.values()];
    const indices: Tensor[] = [];
    try {
      const byKey = new Map<string, Tensor>(); // layers with the same adapters share one index upload
      for (const l of layers) {
        const own = distinct.filter((n) => l.specs.has(n));
        const key = `${l.baseDevice}|${own.join('|')}`;
        let index = byKey.get(key);
        if (!index) {
          const idx = names.map((n) => (n !== null && l.specs.has(n) ? own.indexOf(n) : own.length));
          index = tensor(Int32Array.from(idx), { device: l.baseDevice });
          indices.push(index);
          byKey.set(key, index);
        }
        l.mixed = { names: own, index };
      }
      return fn();
    } finally {
      for (const l of layers) l.mixed = null;
      for (const t of indices) t.dispose();
    }
  }

  /** `model.forward(x)`, optionally with one adapter per sample (`{ adapterNames }`). */
  forward(x: Tensor, options: MixedOptions = {}): Tensor {
    const model = this.model as unknown as TensorModule;
    if (typeof model.forward !== 'function') throw new OpError('lora.forward', 'the model has no forward(x)');
    if (!options.adapterNames) return model.forward(x);
    if (options.adapterNames.length !== x.shape[0]) {
      throw new OpError(
        'lora.forward',
        `${options.adapterNames.length} adapterNames for a batch of ${x.shape[0]}`,
      );
    }
    return this.withAdapterNames(options.adapterNames, () => model.forward(x));
  }

  /**
   * Rebuilds the stacked weights of mixed batches at their next use (after training an adapter in place).
   */
  refreshMixedCache(): void {
    for (const l of this.layers.values()) l.version++;
  }

  /** Merges the active (or named) adapters into the base weights: W ← W + s·B·A. */
  merge(names: readonly string[] = this.#active): this {
    for (const n of names) this.#require(n);
    for (const l of this.layers.values()) l.merge(names.filter((n) => l.specs.has(n)));
    return this;
  }

  /**
   * PEFT's `safe_merge`: computes every ΔW first and merges only if all are finite; otherwise
   * throws naming the layers and leaves the weights untouched.
   */
  async safeMerge(names: readonly string[] = this.#active): Promise<this> {
    for (const n of names) this.#require(n);
    const bad: string[] = [];
    for (const [path, l] of this.layers) {
      for (const n of names.filter((a) => l.specs.has(a))) {
        const d = noGrad(() => tidy(() => l.deltaWeight(n)));
        const values = await d.data();
        d.dispose();
        if (values.some((v) => !Number.isFinite(v))) bad.push(`${path} (${n})`);
      }
    }
    if (bad.length)
      throw new OpError(
        'lora.safeMerge',
        `NaN or infinite values in ΔW of ${bad.join(', ')}; nothing merged`,
      );
    return this.merge(names);
  }

  /** Subtracts every merged adapter (W returns to its value before `merge` up to float rounding). */
  unmerge(): this {
    for (const l of this.layers.values()) l.unmerge();
    return this;
  }

  /**
   * Merges the active adapters and returns the plain model (LoRA layers replaced by their merged
   * base layers, adapter parameters disposed, every parameter trainable again). The handle is
   * unusable afterwards. On a quantized base (`quantizeModel`), merging requantizes W + ΔW;
   * `{ dtype: 'f32' }` instead dequantizes every quantized layer to float32 first, adds ΔW in
   * float32 and returns a full-precision model.
   */
  mergeAndUnload(options: { dtype?: 'f32' } = {}): M {
    if (options.dtype !== undefined && options.dtype !== 'f32')
      throw new OpError('mergeAndUnload', `dtype must be 'f32' when given, got '${String(options.dtype)}'`);
    if (options.dtype === 'f32') {
      for (const l of this.layers.values()) {
        const base = l.base_layer;
        if (!(base instanceof QuantizedLinear)) continue;
        l.registerModule('base_layer', base.toFloat());
        base.weight.dispose();
      }
    }
    this.merge();
    const model = this.unload();
    return options.dtype === 'f32' ? dequantizeModel(model) : model;
  }

  /** Removes LoRA without merging (merged adapters stay in the weights) and returns the model. */
  unload(): M {
    for (const [path, l] of this.layers) {
      this.model.setSubmodule(path, l.base_layer);
      for (const n of [...l.specs.keys()]) {
        l.merged.delete(n);
        l.deleteAdapter(n);
      }
      l.releaseCache();
    }
    this.model.requiresGrad_(true);
    this.configs.clear();
    this.targets.clear();
    this.#active = [];
    handles.delete(this.model);
    return this.model;
  }

  /** Parameters that train (LoRA A/B of the active adapters, biases per config, modulesToSave). */
  trainableParameters(): Tensor[] {
    return this.model.parameters().filter((p) => p.requiresGrad);
  }

  /** Names of the trainable parameters. */
  trainableParameterNames(): string[] {
    return this.model
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n]) => n);
  }

  /** Freezes everything, then unfreezes the active adapters' A/B, biases and modulesToSave. */
  #freeze(): void {
    for (const p of this.model.parameters()) p.requiresGrad_(false);
    const layers = this.layers;
    for (const name of this.#active) {
      const cfg = this.configs.get(name)!;
      for (const [pname, p] of this.model.namedParameters()) {
        const parts = pname.split('.');
        const isLora = parts.some(
          (s, i) => /^lora_(A|B|embedding_A|embedding_B)$/.test(s) && parts[i + 1] === name,
        );
        const isBias = parts[parts.length - 1].includes('bias');
        const owner = parts.slice(0, -1).join('.');
        const ofAdapted = owner.endsWith('.base_layer') || owner === 'base_layer';
        const adaptedPath = owner.replace(/\.?base_layer$/, '');
        const inSave = cfg.modulesToSave.some((k) =>
          parts.some((_, i) => suffixMatches(k, parts.slice(0, i + 1).join('.'))),
        );
        const biasOn =
          isBias &&
          (cfg.bias === 'all' ||
            (cfg.bias === 'lora_only' && ofAdapted && layers.get(adaptedPath)?.specs.has(name) === true));
        if (isLora || biasOn || inSave) p.requiresGrad_(true);
      }
    }
  }
}

function combineInto(
  l: LoraLayer,
  adapters: readonly string[],
  weights: readonly number[],
  target: string,
  type: 'linear' | 'cat',
): void {
  const e = l.sliceCount;
  const parts = adapters.map((a, i) => {
    const [A, B] = l.factorParams(a);
    const s = l.specs.get(a)!.scaling;
    const w = weights[i];
    return type === 'cat'
      ? { A: A.mul(w * s), B }
      : { A: A.mul(Math.sign(w) * Math.sqrt(Math.abs(w)) * s), B: B.mul(Math.sqrt(Math.abs(w))) };
  });
  const [tA, tB] = l.factorParams(target);
  if (type === 'linear') {
    tA.copy_(parts.map((p) => p.A).reduce((x, y) => x.add(y)));
    tB.copy_(parts.map((p) => p.B).reduce((x, y) => x.add(y)));
    return;
  }
  // A rows are grouped per slice (fused layers): concatenate each slice's rows, then restack.
  const inF = tA.shape[1];
  const As = parts.map((p) => p.A.reshape([e, p.A.shape[0] / e, inF]));
  tA.copy_(cat(As, 1).reshape([tA.shape[0], inF]));
  tB.copy_(
    cat(
      parts.map((p) => p.B),
      1,
    ),
  );
}

/** What `trainableParameters` counts. */
export interface TrainableReport {
  /** Parameter elements that require grad. */
  trainable: number;
  /** All parameter elements. */
  total: number;
  /** 100 · trainable / total. */
  percentage: number;
  /** PEFT's line: "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364". */
  toString(): string;
}

/**
 * Trainable vs total parameter counts, like PEFT's `print_trainable_parameters()`.
 *
 * @example
 * String(trainableParameters(lora)); // "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364"
 */
export function trainableParameters(model: Module | LoraModel): TrainableReport {
  const m = model instanceof LoraModel ? model.model : model;
  let trainable = 0;
  let total = 0;
  for (const p of m.parameters()) {
    total += p.size;
    if (p.requiresGrad) trainable += p.size;
  }
  const percentage = total === 0 ? 0 : (100 * trainable) / total;
  const fmt = (n: number): string => n.toLocaleString('en-US');
  return {
    trainable,
    total,
    percentage,
    toString: () =>
      `trainable params: ${fmt(trainable)} || all params: ${fmt(total)} || trainable%: ${percentage.toFixed(4)}`,
  };
}
