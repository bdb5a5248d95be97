import { OpError, type Tensor } from '@lowrank/tensor';
import { composite } from './internal.js';
import { Module, type UnaryModule } from './module.js';

/**
 * Chains modules: `forward(x)` runs each in order. Children are named '0', '1', … as in PyTorch.
 *
 * @example
 * const net = new Sequential(new Linear(2, 16), new ReLU(), new Linear(16, 2));
 * net.forward(x); // [B, 2] → [B, 2]; parameters '0.weight', '0.bias', '2.weight', '2.bias'
 */
export class Sequential extends Module {
  constructor(...modules: UnaryModule[]) {
    super();
    for (const m of modules) this.append(m);
  }

  /** Number of modules. */
  get length(): number {
    return this.namedChildren().length;
  }

  /** The i-th module (negative counts from the end). */
  at(i: number): UnaryModule {
    const children = this.children() as UnaryModule[];
    const m = children[i < 0 ? children.length + i : i];
    if (!m) throw new OpError('Sequential.at', `index ${i} out of range for ${children.length} modules`);
    return m;
  }

  /** Adds a module at the end (named by its position). Returns this. */
  append(m: UnaryModule): this {
    this.registerModule(String(this.length), m);
    return this;
  }

  /** Runs the modules in order, each on the previous one's output. */
  forward(x: Tensor): Tensor {
    // children() reads the registry, so modules swapped in by setSubmodule are used
    const children = this.children() as UnaryModule[];
    return composite([x, ...this.parameters()], () => children.reduce((h, m) => m.forward(h), x));
  }
}

/** A list of submodules named '0', '1', … (GPT-2's `h`). Iterable. */
export class ModuleList<M extends Module = Module> extends Module {
  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.append(m);
  }

  /** Number of modules. */
  get length(): number {
    return this.namedChildren().length;
  }

  /** The i-th module (negative counts from the end). */
  at(i: number): M {
    const children = this.children() as M[];
    const m = children[i < 0 ? children.length + i : i];
    if (!m) throw new OpError('ModuleList.at', `index ${i} out of range for ${children.length} modules`);
    return m;
  }

  /** Adds a module at the end (named by its position). Returns this. */
  append(m: M): this {
    this.registerModule(String(this.length), m);
    return this;
  }

  /** The modules in order. */
  [Symbol.iterator](): Iterator<M> {
    return (this.children() as M[])[Symbol.iterator]();
  }
}

/** Submodules by name. */
export class ModuleDict<M extends Module = Module> extends Module {
  constructor(modules: Readonly<Record<string, M>> = {}) {
    super();
    for (const [k, m] of Object.entries(modules)) this.registerModule(k, m);
  }

  /** The module named `key` (throws when there is none). */
  get(key: string): M {
    const entry = this.namedChildren().find(([k]) => k === key);
    if (!entry) throw new OpError('ModuleDict.get', `no module '${key}'`);
    return entry[1] as M;
  }

  /** Whether a module is named `key`. */
  has(key: string): boolean {
    return this.namedChildren().some(([k]) => k === key);
  }

  /** Registers (or replaces) the module named `key`. Returns this. */
  set(key: string, m: M): this {
    if (this.has(key)) this.setSubmodule(key, m);
    else this.registerModule(key, m);
    return this;
  }

  /** The names, in registration order. */
  keys(): string[] {
    return this.namedChildren().map(([k]) => k);
  }

  /** [name, module] pairs, in registration order. */
  entries(): [string, M][] {
    return this.namedChildren() as [string, M][];
  }
}
