import { Module, QuantizedLinear } from '@lowrank/nn';
import {
  captureGuard,
  cat,
  type Device,
  defaultGenerator,
  Generator,
  gatherMatmul,
  keep,
  loraExpand,
  OpError,
  stack,
  type Tensor,
  tidy,
  zeros,
} from '@lowrank/tensor';
import { type AdapterParams, composite, noGrad } from '../internal.js';

/** Hyper-parameters of one adapter in one layer. */
export interface AdapterSpec {
  /** Rank. */
  r: number;
  /** α. */
  alpha: number;
  /** α/r, or α/√r with rsLoRA. */
  scaling: number;
  /** Dropout probability on the LoRA path's input. */
  dropout: number;
  /** Whether scaling is α/√r (rank-stabilised) rather than α/r. */
  useRslora: boolean;
}

/** A module with one input and one output tensor (what LoRA wraps). */
export interface TensorModule extends Module {
  /** The module's computation. */
  forward(x: Tensor): Tensor;
}

/** An adapter in PEFT's plain form: ΔW = scaling · B·A with A [R, in] and B [out, R]. */
export interface PlainFactors {
  /** Down-projection [R, in] (R = r, times the number of adapted slices for fused layers). */
  A: Tensor;
  /** Up-projection [out, R]. */
  B: Tensor;
  /** α/r (or α/√r). */
  scaling: number;
}

/**
 * What every LoRA layer shares: the wrapped `base_layer`, per-adapter parameters registered under
 * PEFT's names, the active/merged/disabled state, merging, and mixed-batch dispatch. A subclass
 * supplies the LoRA path added into the base output (`addPath`), ΔW in the base weight's layout (`deltaWeight`), and its
 * adapters in PEFT's plain form (`plainFactors`).
 *
 * Merged adapters and training: a forward pass in training mode while an adapter is merged is
 * refused (it would train A and B through a path that is no longer computed); call `unmerge()`.
 */
export abstract class LoraLayer<M extends TensorModule = TensorModule> extends Module {
  /** The wrapped layer (PEFT's name), frozen; merging writes into its weight. */
  readonly base_layer: M;
  /** Hyper-parameters of each adapter, by name. */
  readonly specs = new Map<string, AdapterSpec>();
  /** The adapters whose paths run in `forward` (several are summed). */
  activeAdapters: string[] = [];
  /** True inside `disableAdapters`: the base layer alone runs. */
  disabled = false;
  /** Adapters currently added into the base weight. */
  readonly merged = new Set<string>();
  /** Set by the handle for a mixed batch: per sample an index into `names` (names.length = base). */
  mixed: {
    /** The adapters stacked, in slot order. */
    names: readonly string[];
    /** int32 [batch]: each sample's slot (names.length = the base model alone). */
    index: Tensor;
  } | null = null;
  /** Draws the LoRA-path dropout masks (seeded by the handle when the config has a seed). */
  generator: Generator = defaultGenerator();
  /** Bumped whenever adapters change (invalidates the stacked weights of mixed batches). */
  version = 0;
  #stackCache: { key: string; A: Tensor; B: Tensor } | null = null;

  constructor(base: M) {
    super();
    this.base_layer = this.registerModule('base_layer', base);
  }

  /** The parameter holders whose entries are named by adapter. */
  protected abstract holders(): AdapterParams[];
  /** y + scaling · B·A·dropout(x) for one adapter (y: the base layer's output, or the sum so far). */
  protected abstract addPath(y: Tensor, x: Tensor, name: string, spec: AdapterSpec): Tensor;
  /** ΔW = scaling · B·A laid out like the base weight. */
  abstract deltaWeight(name: string): Tensor;
  /** The adapter as PEFT stores it (fused layers expand theirs). */
  abstract plainFactors(name: string): PlainFactors;
  /**
   * y plus the mixed-batch LoRA path from stacked Aᵀ [N+1, in, R] and Bᵀ [N+1, R, out] (scaling
   * folded into B, slot N = zeros for the base): Punica's BGMV — two kernels that read each
   * sample's slices of the stacks by its index (no gathered per-sample copies), the second one
   * adding into y as it stores, whatever the number of adapters.
   */
  protected addMixedPath(y: Tensor, x: Tensor, index: Tensor, AT: Tensor, BT: Tensor): Tensor {
    const [b, inF, outF] = [x.shape[0], AT.shape[1], BT.shape[2]];
    const h = gatherMatmul(x.reshape([b, -1, inF]), AT, index); // [b, T, in] · Aᵀ[index[b]] → [b, T, R]
    return loraExpand(y.reshape([b, -1, outF]), h, BT, { index }).reshape(y.shape); // y + h · Bᵀ[index[b]]
  }
  /** Creates the adapter's parameters (called by `addAdapter`). */
  protected abstract createParams(
    name: string,
    spec: AdapterSpec,
    init: boolean | 'gaussian',
    gen: Generator,
  ): void;
  /** The base weight that merging changes. */
  abstract get baseWeight(): Tensor;

  /**
   * Adds an adapter's parameters (A initialised per `init`, B zeros unless `init` is false). Not activated.
   */
  addAdapter(
    name: string,
    spec: AdapterSpec,
    init: boolean | 'gaussian' = true,
    gen = new Generator(0),
  ): void {
    if (this.specs.has(name)) throw new OpError('lora', `adapter '${name}' already exists in this layer`);
    this.specs.set(name, spec);
    this.createParams(name, spec, init, gen);
    this.version++;
  }

  /** The adapter's own parameters [A, B] (for fused layers in their stacked per-slice layout). */
  factorParams(name: string): [Tensor, Tensor] {
    const [a, b] = this.holders();
    return [a.get(name), b.get(name)];
  }

  /** How many slices share an adapter's A rows (fused projections; 1 otherwise). */
  get sliceCount(): number {
    return 1;
  }

  /** Removes an adapter and its parameters (refused while it is merged). */
  deleteAdapter(name: string): void {
    if (this.merged.has(name))
      throw new OpError('lora', `adapter '${name}' is merged; unmerge() before deleting it`);
    for (const h of this.holders()) h.delete(name);
    this.specs.delete(name);
    this.activeAdapters = this.activeAdapters.filter((n) => n !== name);
    this.version++;
  }

  /**
   * `base_layer(x)` plus the path of every active, unmerged adapter (or the per-sample adapters of a mixed batch).
   * `base` is `base_layer(x)` when the caller has computed it already (a model that multiplies
   * several projections of one input in one product, then hands each layer its slice).
   */
  forward(x: Tensor, base?: Tensor): Tensor {
    this.#guardCapture();
    if (this.mixed) return this.#mixedForward(x, this.mixed, base);
    const live = this.disabled ? [] : this.activeAdapters.filter((n) => !this.merged.has(n));
    if (this.training && this.merged.size > 0 && !this.disabled) {
      throw new OpError(
        'lora',
        `adapters [${[...this.merged].join(', ')}] are merged; call unmerge() before training`,
      );
    }
    const y = base ?? this.base_layer.forward(x);
    if (live.length === 0) return y;
    return composite([x, ...live.flatMap((n) => this.holders().map((h) => h.get(n)))], () => {
      let out = y;
      for (const n of live) out = this.addPath(out, x, n, this.specs.get(n)!);
      return out;
    });
  }

  /**
   * Inside a compiled step's trace: the capture holds only while this layer's adapter state is
   * what the trace saw (switching, disabling, merging, adding or deleting adapters retraces).
   */
  #guardCapture(): void {
    const { activeAdapters, disabled, version, mixed } = this;
    captureGuard(
      () =>
        this.activeAdapters === activeAdapters &&
        this.disabled === disabled &&
        this.version === version &&
        this.mixed === mixed,
      'the LoRA adapter state',
    );
  }

  /** Adds the active (or the named) adapters into the base weight: W ← W + ΔW. */
  merge(names: readonly string[] = this.activeAdapters): void {
    for (const n of names) {
      if (this.merged.has(n)) continue;
      if (!this.specs.has(n)) throw new OpError('lora.merge', `no adapter '${n}' in this layer`);
      noGrad(() => tidy(() => this.addToBase(this.deltaWeight(n), 1)));
      this.merged.add(n);
    }
    this.version++;
  }

  /**
   * W ← W + sign·ΔW. A quantized base (`QuantizedLinear`) is dequantized, changed and requantized
   * to its format: the rounding to the code grid changes outputs, which is warned about once.
   */
  protected addToBase(delta: Tensor, sign: 1 | -1): void {
    const base = this.base_layer;
    if (base instanceof QuantizedLinear) {
      base.addDelta(delta, sign);
      warnQuantizedMerge(base);
    } else if (sign === 1) {
      this.baseWeight.add_(delta);
    } else {
      this.baseWeight.sub_(delta);
    }
  }

  /** Device of the base layer's weight. */
  get baseDevice(): Device {
    return this.baseWeight.device;
  }

  /** Subtracts every merged adapter from the base weight (restores it to within float rounding; a quantized base is requantized). */
  unmerge(): void {
    for (const n of [...this.merged].reverse()) {
      noGrad(() => tidy(() => this.addToBase(this.deltaWeight(n), -1)));
      this.merged.delete(n);
    }
    this.version++;
  }

  #mixedForward(x: Tensor, mixed: { names: readonly string[]; index: Tensor }, base?: Tensor): Tensor {
    if (this.merged.size > 0)
      throw new OpError('lora', 'mixed-adapter batches are refused while an adapter is merged');
    if (this.training)
      throw new OpError('lora', 'mixed-adapter batches are for inference; call eval() first');
    if (x.shape[0] !== mixed.index.shape[0]) {
      throw new OpError(
        'lora',
        `mixed batch: ${mixed.index.shape[0]} adapter names for a batch of ${x.shape[0]}`,
      );
    }
    if (mixed.names.length === 0) return base ?? this.base_layer.forward(x);
    const { A, B } = this.#stacked(mixed.names);
    return tidy(() => this.addMixedPath(base ?? this.base_layer.forward(x), x, mixed.index, A, B));
  }

  /** Aᵀ [N+1, in, R] and Bᵀ [N+1, R, out] (scaling folded into B; the last slot is zeros = base). */
  #stacked(names: readonly string[]): { A: Tensor; B: Tensor } {
    const ids = names.map((n) => this.holders().map((h) => h.get(n).id));
    const key = `${this.version}|${names.join('|')}|${ids.join(';')}`;
    if (this.#stackCache?.key === key) return this.#stackCache;
    const packed = noGrad(() =>
      tidy(() => {
        const factors = names.map((n) => this.plainFactors(n));
        const R = Math.max(...factors.map((f) => f.A.shape[0]));
        const [inF, outF] = [factors[0].A.shape[1], factors[0].B.shape[0]];
        const pad = (t: Tensor, dim: number): Tensor => {
          const missing = R - t.shape[dim];
          if (missing === 0) return t;
          const shape = [...t.shape];
          shape[dim] = missing;
          return cat([t, zeros(shape, { device: t.device })], dim);
        };
        const As = factors.map((f) => pad(f.A, 0).T); // [in, R] each
        const Bs = factors.map((f) => pad(f.B.mul(f.scaling), 1).T); // [R, out] each
        As.push(zeros([inF, R], { device: As[0].device }));
        Bs.push(zeros([R, outF], { device: As[0].device }));
        return { A: keep(stack(As, 0)), B: keep(stack(Bs, 0)) }; // contiguous Aᵀ/Bᵀ stacks
      }),
    );
    this.releaseCache();
    this.#stackCache = { key, ...packed };
    return packed;
  }

  /** Frees the stacked mixed-batch weights (rebuilt on the next mixed batch). */
  releaseCache(): void {
    this.#stackCache?.A.dispose();
    this.#stackCache?.B.dispose();
    this.#stackCache = null;
  }

  override dispose(): void {
    this.releaseCache();
    super.dispose();
  }
}

let warnedQuantizedMerge = false;

function warnQuantizedMerge(base: QuantizedLinear): void {
  if (warnedQuantizedMerge) return;
  warnedQuantizedMerge = true;
  console.warn(
    `lora: merging into a quantized (${base.format}) base requantizes W + ΔW: rounding to the code grid changes outputs beyond float rounding (mergeAndUnload({ dtype: 'f32' }) keeps full precision)`,
  );
}
