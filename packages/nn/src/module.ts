import {
  captureGuard,
  type Device,
  type DType,
  fromTypedArray,
  invalidateCaptures,
  isTracing,
  keep,
  OpError,
  Tensor,
  type TypedArray,
} from '@lowrank/tensor';
import { entriesOf, fmtShape, noGrad } from './internal.js';

/** Values on the host, as a checkpoint reader gives them (row-major). */
export interface HostTensor {
  /** Element type. */
  readonly dtype: DType;
  /** Size of each dimension. */
  readonly shape: readonly number[];
  /** The values, row-major, in the dtype's CPU representation. */
  readonly data: TypedArray;
}

/** Name → tensor, in registration order (PyTorch's `state_dict()`). */
export type StateDict = Record<string, Tensor>;

/** What `loadStateDict` accepts: tensors (on the module's device) or host arrays, by name. */
export type StateDictSource =
  | Readonly<Record<string, Tensor | HostTensor>>
  | ReadonlyMap<string, Tensor | HostTensor>;

/** Options of `loadStateDict`. */
export interface LoadStateDictOptions {
  /** Throw when keys are missing or unexpected (default true). Mis-shaped keys always throw. */
  strict?: boolean;
}

/** What `loadStateDict` did not match (empty lists in strict mode, which throws instead). */
export interface LoadStateDictResult {
  /** Keys of this module that the source lacked (left as they were). */
  missingKeys: string[];
  /** Keys of the source that name nothing in this module (ignored). */
  unexpectedKeys: string[];
}

/**
 * Marks `t` as a trainable parameter: it requires grad and is exempt from enclosing `tidy`
 * scopes. Returns `t` itself (a real Tensor: every op works on it).
 *
 * @example
 * const w = Parameter(randn([4, 3]));
 * w.requiresGrad; // true
 */
export function Parameter(t: Tensor, requiresGrad = true): Tensor {
  if (!t.isLeaf) throw new OpError('Parameter', 'expected a leaf tensor; call detach() first');
  t.requiresGrad_(requiresGrad);
  return keep(t);
}

const NAME = /^[^.]+$/;

function checkName(op: string, name: string): void {
  if (!NAME.test(name) || name === '__proto__') {
    throw new OpError(op, `invalid name '${name}': expected a non-empty name without '.'`);
  }
}

function isHostTensor(v: Tensor | HostTensor): v is HostTensor {
  return !(v instanceof Tensor);
}

/**
 * Base class of every layer. Parameters, buffers and submodules are registered by name, which
 * gives the dotted checkpoint keys (`transformer.h.0.attn.c_attn.weight`):
 *
 * @example
 * class Block extends Module {
 *   readonly fc: Linear;
 *   readonly scale: Tensor;
 *   constructor() {
 *     super();
 *     this.fc = this.registerModule('fc', new Linear(4, 4));
 *     this.scale = this.registerParameter('scale', ones([4]));
 *   }
 *   forward(x: Tensor): Tensor {
 *     return this.fc.forward(x).mul(this.scale);
 *   }
 * }
 *
 * NOTE: fields are ordinary properties; when a registered value is replaced (`setSubmodule`,
 * `to(device)`), every own property of the owner that held the old value is pointed at the new
 * one, so `this.fc` and the registry never disagree.
 */
export abstract class Module {
  #training = true;
  /**
   * Training mode (dropout active); switch with `train()` / `eval()`. A compiled step
   * (`lr.compile`) recorded the kernels of the modes its trace read, so it replays only while
   * every module it read is in that mode again: a training step stays captured across an
   * evaluation (`eval()`, then `train()`), and an evaluation step across the training between.
   */
  get training(): boolean {
    const mode = this.#training;
    if (isTracing())
      captureGuard(() => this.#training === mode, `${this.constructor.name}'s train/eval mode`);
    return mode;
  }
  /** Sets this module's mode alone (`train()`/`eval()` set every submodule's). */
  set training(mode: boolean) {
    this.#training = mode;
  }
  readonly #parameters = new Map<string, Tensor | null>();
  readonly #buffers = new Map<string, Tensor | null>();
  readonly #nonPersistent = new Set<string>();
  readonly #modules = new Map<string, Module | null>();

  // ---- registration

  /**
   * Registers a parameter (it is made to require grad unless `requiresGrad: false`, and kept out
   * of `tidy` scopes). `null` declares an absent optional parameter (e.g. `bias: false`).
   */
  registerParameter<T extends Tensor | null>(
    name: string,
    t: T,
    options: { requiresGrad?: boolean } = {},
  ): T {
    this.#checkFree('registerParameter', name, this.#parameters);
    invalidateCaptures(); // a compiled step read the old tensor
    if (t !== null) Parameter(t, options.requiresGrad ?? true);
    this.#replaceFields(this.#parameters.get(name), t);
    this.#parameters.set(name, t);
    return t;
  }

  /** Registers a non-trainable tensor (e.g. running statistics, a mask); `persistent` ones are saved. */
  registerBuffer<T extends Tensor | null>(name: string, t: T, options: { persistent?: boolean } = {}): T {
    this.#checkFree('registerBuffer', name, this.#buffers);
    invalidateCaptures();
    if (t !== null) keep(t);
    this.#replaceFields(this.#buffers.get(name), t);
    this.#buffers.set(name, t);
    if (options.persistent === false) this.#nonPersistent.add(name);
    else this.#nonPersistent.delete(name);
    return t;
  }

  /**
   * Registers a submodule; its parameters appear under `name.`. Registering a name again
   * replaces the old value (fields that held it are updated), for parameters and buffers too.
   */
  registerModule<M extends Module | null>(name: string, m: M): M {
    this.#checkFree('registerModule', name, this.#modules);
    invalidateCaptures();
    this.#replaceFields(this.#modules.get(name), m);
    this.#modules.set(name, m);
    return m;
  }

  #checkFree(op: string, name: string, own: Map<string, unknown>): void {
    checkName(op, name);
    for (const map of [this.#parameters, this.#buffers, this.#modules] as Map<string, unknown>[]) {
      if (map !== own && map.has(name))
        throw new OpError(op, `'${name}' is already registered as another kind`);
    }
  }

  /** Points every own property that holds `old` at `value` (keeps fields and registry in sync). */
  #replaceFields(old: unknown, value: unknown): void {
    if (old === null || old === undefined) return;
    for (const key of Object.keys(this)) if (Reflect.get(this, key) === old) Reflect.set(this, key, value);
  }

  // ---- lookup

  /** The submodule at a dotted path (`''` is this module). */
  getSubmodule(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    for (const part of path.split('.')) {
      const next = m.#modules.get(part);
      if (!next) {
        throw new OpError('getSubmodule', `'${path}': ${m.constructor.name} has no submodule '${part}'`);
      }
      m = next;
    }
    return m;
  }

  /**
   * Replaces the submodule at a dotted path (used by LoRA to swap layers in place). The parent's
   * fields that held the old module now hold the new one. Returns the old module.
   *
   * @example
   * model.setSubmodule('h.0.attn.c_attn', new LoRALinear(model.getSubmodule('h.0.attn.c_attn')));
   */
  setSubmodule(path: string, module: Module): Module {
    const dot = path.lastIndexOf('.');
    const parent = this.getSubmodule(dot < 0 ? '' : path.slice(0, dot));
    const name = path.slice(dot + 1);
    const old = parent.#modules.get(name);
    if (!old)
      throw new OpError('setSubmodule', `'${path}': ${parent.constructor.name} has no submodule '${name}'`);
    parent.#modules.set(name, module);
    parent.#replaceFields(old, module);
    return old;
  }

  /** The parameter or buffer at a dotted path. */
  getParameter(path: string): Tensor {
    const dot = path.lastIndexOf('.');
    const owner = this.getSubmodule(dot < 0 ? '' : path.slice(0, dot));
    const name = path.slice(dot + 1);
    const t = owner.#parameters.get(name) ?? owner.#buffers.get(name);
    if (!t) throw new OpError('getParameter', `'${path}': no parameter or buffer '${name}'`);
    return t;
  }

  /** Direct submodules with their names. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [name, m] of this.#modules) if (m) out.push([name, m]);
    return out;
  }

  /** Direct submodules. */
  children(): Module[] {
    return this.namedChildren().map(([, m]) => m);
  }

  /** This module and all submodules, depth first, with dotted names (`''` for this one); each once. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const visit = (m: Module, name: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([name, m]);
      for (const [child, sub] of m.namedChildren()) visit(sub, name === '' ? child : `${name}.${child}`);
    };
    visit(this, prefix);
    return out;
  }

  /** This module and all submodules, depth first, each once. */
  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** Parameters with dotted names; a parameter shared by two modules (weight tying) appears once. */
  namedParameters(options: { recurse?: boolean } = {}): [string, Tensor][] {
    return this.#namedTensors('parameters', options.recurse ?? true, true);
  }

  /** Every parameter (of submodules too unless `recurse: false`), each once; what optimizers take. */
  parameters(options: { recurse?: boolean } = {}): Tensor[] {
    return this.namedParameters(options).map(([, p]) => p);
  }

  /** Buffers with dotted names (of submodules too unless `recurse: false`). */
  namedBuffers(options: { recurse?: boolean } = {}): [string, Tensor][] {
    return this.#namedTensors('buffers', options.recurse ?? true, true);
  }

  /** Every buffer (of submodules too unless `recurse: false`). */
  buffers(options: { recurse?: boolean } = {}): Tensor[] {
    return this.namedBuffers(options).map(([, b]) => b);
  }

  #namedTensors(kind: 'parameters' | 'buffers', recurse: boolean, dedupe: boolean): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const mods: [string, Module][] = recurse ? this.namedModules() : [['', this]];
    for (const [prefix, m] of mods) {
      const map = kind === 'parameters' ? m.#parameters : m.#buffers;
      for (const [name, t] of map) {
        if (!t || (dedupe && seen.has(t))) continue;
        seen.add(t);
        out.push([prefix === '' ? name : `${prefix}.${name}`, t]);
      }
    }
    return out;
  }

  /** Number of parameter elements (only trainable ones with `trainableOnly`). */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const p of this.parameters()) if (!options.trainableOnly || p.requiresGrad) n += p.size;
    return n;
  }

  // ---- modes

  /** Calls `fn` on every submodule (children first) and then on this module, like PyTorch. */
  apply(fn: (m: Module) => void): this {
    for (const child of this.children()) child.apply(fn);
    fn(this);
    return this;
  }

  /** Sets training mode here and in every submodule. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  /** Sets evaluation mode (`train(false)`): dropout off. Returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Freezes (false) or unfreezes (true) every parameter. */
  requiresGrad_(flag = true): this {
    for (const p of this.parameters()) p.requiresGrad_(flag);
    return this;
  }

  /** Drops (disposes) the gradients of every parameter. */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  // ---- state

  /**
   * Parameters and persistent buffers by dotted name. The tensors are the module's own (not
   * copies): do not dispose them. Tied weights appear under every name, as in PyTorch.
   */
  stateDict(): StateDict {
    const out: StateDict = {};
    for (const [prefix, m] of this.namedModules()) {
      const p = prefix === '' ? '' : `${prefix}.`;
      for (const [name, t] of m.#parameters) if (t) out[p + name] = t;
      for (const [name, t] of m.#buffers) if (t && !m.#nonPersistent.has(name)) out[p + name] = t;
    }
    return out;
  }

  /**
   * Copies values into the parameters and buffers by name (values are cast to each tensor's
   * dtype). With `strict` (default) a missing or unexpected key throws; a shape mismatch always
   * throws. Nothing is modified when it throws. The error lists every offending key.
   */
  loadStateDict(source: StateDictSource, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = options.strict ?? true;
    const entries = new Map(entriesOf(source));
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !entries.has(k));
    const unexpectedKeys = [...entries.keys()].filter((k) => !(k in own));
    const mismatched: string[] = [];
    for (const [key, target] of Object.entries(own)) {
      const src = entries.get(key);
      if (!src) continue;
      if (!sameShape(src.shape, target.shape)) {
        mismatched.push(`${key}: checkpoint ${fmtShape(src.shape)}, model ${fmtShape(target.shape)}`);
      } else if (!isHostTensor(src) && src.device !== target.device) {
        mismatched.push(`${key}: on device '${src.device}', model on '${target.device}' (move it first)`);
      } else if (isHostTensor(src) && src.data.length !== target.size) {
        mismatched.push(`${key}: ${src.data.length} values for shape ${fmtShape(src.shape)}`);
      }
    }
    const problems: string[] = [];
    if (mismatched.length) problems.push(`mis-shaped keys:\n  ${mismatched.join('\n  ')}`);
    if (strict && missingKeys.length) problems.push(`missing keys: ${missingKeys.join(', ')}`);
    if (strict && unexpectedKeys.length) problems.push(`unexpected keys: ${unexpectedKeys.join(', ')}`);
    if (problems.length) {
      throw new OpError('loadStateDict', `${this.constructor.name}: ${problems.join('\n')}`);
    }
    noGrad(() => {
      for (const [key, target] of Object.entries(own)) {
        const src = entries.get(key);
        if (!src) continue;
        if (isHostTensor(src)) {
          const t = fromTypedArray(src.data, target.shape, { dtype: src.dtype, device: target.device });
          target.copy_(t);
          t.dispose();
        } else if (src !== target) {
          target.copy_(src);
        }
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Moves every parameter and buffer to `device` (new tensors; the old ones are disposed and
   * fields that held them are updated). Gradients are dropped.
   */
  async to(device: Device): Promise<this> {
    const moved = new Map<Tensor, Tensor>();
    const move = async (t: Tensor): Promise<Tensor> => {
      const done = moved.get(t);
      if (done) return done;
      if (t.device === device) return t;
      const copy = keep(await t.to(device));
      if (t.requiresGrad) copy.requiresGrad_(true);
      moved.set(t, copy);
      return copy;
    };
    for (const m of this.modules()) {
      for (const map of [m.#parameters, m.#buffers]) {
        for (const [name, t] of map) {
          if (!t || t.device === device) continue;
          const next = await move(t);
          map.set(name, next);
          m.#replaceFields(t, next);
        }
      }
    }
    for (const old of moved.keys()) old.dispose();
    return this;
  }

  /** Disposes every parameter and buffer (the module is unusable afterwards). */
  dispose(): void {
    for (const m of this.modules()) {
      for (const map of [m.#parameters, m.#buffers]) for (const t of map.values()) t?.dispose();
    }
  }

  // ---- printing

  /** Extra text shown in `toString()` (like PyTorch's `extra_repr`). */
  extraRepr(): string {
    return '';
  }

  /** The module tree, one submodule per line, like PyTorch's `print(model)`. */
  toString(): string {
    const children = this.namedChildren();
    const head = `${this.constructor.name}(${this.extraRepr()}`;
    if (children.length === 0) return `${head})`;
    const lines = children.map(([n, m]) => `  (${n}): ${m.toString().replace(/\n/g, '\n  ')}`);
    return `${head}\n${lines.join('\n')}\n)`;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A module mapping one tensor to one tensor (what `Sequential` chains). */
export interface UnaryModule extends Module {
  /** The module's computation. */
  forward(x: Tensor): Tensor;
}
