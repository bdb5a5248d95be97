import { fromTypedArray, keep, OpError, onReplay, Tensor, tidy } from '@lowrank/tensor';
import { fmtShape, noGrad } from '../internal.js';
import type { HostTensor } from '../module.js';

/** Option values an optimizer group may hold (JSON-serialisable). */
export type OptionValue = number | boolean | readonly number[];

/** Options every optimizer has. */
export interface BaseOptions {
  /** Learning rate. */
  lr: number;
}

/** A parameter group: its parameters and its own options (PyTorch's `param_groups` entries). */
export type ParamGroup<O extends BaseOptions> = O & {
  /** The group's parameters. */
  params: Tensor[];
  /** The learning rate the schedulers scale (set by the first scheduler, as PyTorch's `initial_lr`). */
  initialLr?: number;
};

/** What optimizer constructors accept: parameters, or groups with options overriding the defaults. */
export type ParamsSpec<O extends BaseOptions> =
  | Iterable<Tensor>
  | readonly (Partial<O> & {
      /** The group's parameters. */
      params: Iterable<Tensor>;
    })[];

/** Per-parameter state: a step counter and named tensors (momentum buffers, moments). */
export interface ParamState {
  /** Updates applied to this parameter. */
  step: number;
  /** State tensors by name (e.g. `expAvg`, `expAvgSq`, `momentumBuffer`). */
  tensors: Record<string, Tensor>;
}

/**
 * An optimizer's state, PyTorch-shaped: parameters are numbered across groups in order; `state`
 * holds entries only for parameters that have been updated.
 */
export interface OptimizerStateDict {
  /** Per parameter number: its step count and state tensors. */
  state: Record<
    string,
    {
      /** Updates applied to the parameter. */
      step: number;
      /** State tensors by name. */
      tensors: Record<string, Tensor | HostTensor>;
    }
  >;
  /** Per group: the numbers of its parameters and its options. */
  paramGroups: {
    /** Numbers of the group's parameters. */
    params: number[];
    /** The group's options (lr, betas, …). */
    options: Record<string, OptionValue>;
  }[];
}

/**
 * Base class of the optimizers. `step()` updates every parameter that requires grad and has a
 * gradient, in place under `noGrad`; state is created lazily for those parameters only (frozen
 * parameters, e.g. a LoRA base model, cost no optimizer memory).
 */
export abstract class Optimizer<O extends BaseOptions = BaseOptions> {
  /** The parameter groups, each with its own options (schedulers change their `lr`). */
  readonly paramGroups: ParamGroup<O>[] = [];
  /** Options used where a group does not set its own. */
  readonly defaults: O;
  /** Per-parameter state, created at a parameter's first update. */
  protected readonly state = new Map<Tensor, ParamState>();

  constructor(params: ParamsSpec<O>, defaults: O) {
    this.defaults = defaults;
    const list = [...(params as Iterable<Tensor | (Partial<O> & { params: Iterable<Tensor> })>)];
    if (list.length === 0) throw new OpError(this.constructor.name, 'got an empty parameter list');
    if (list.every((p) => p instanceof Tensor))
      this.addParamGroup({ params: list as Tensor[] } as Partial<O> & { params: Tensor[] });
    else if (list.some((p) => p instanceof Tensor)) {
      throw new OpError(this.constructor.name, 'expected tensors or parameter groups, not a mixture');
    } else for (const g of list as (Partial<O> & { params: Iterable<Tensor> })[]) this.addParamGroup(g);
  }

  /** Adds a group; options it does not set come from the defaults. */
  addParamGroup(group: Partial<O> & { params: Iterable<Tensor> }): void {
    const params = [...group.params];
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    for (const p of params) {
      if (seen.has(p)) throw new OpError('addParamGroup', 'a parameter appears in more than one group');
      if (p.dtype !== 'float32')
        throw new OpError('addParamGroup', `parameters must be float32, got ${p.dtype}`);
      seen.add(p);
    }
    this.validate({ ...this.defaults, ...group });
    this.paramGroups.push({ ...this.defaults, ...group, params } as ParamGroup<O>);
  }

  /** Checks a group's options (throws OpError naming the bad one). */
  protected abstract validate(options: O): void;

  /** Updates one parameter in place from its gradient (runs under noGrad inside a tidy scope). */
  protected abstract update(p: Tensor, grad: Tensor, state: ParamState, group: ParamGroup<O>): void;

  /** One optimisation step over every parameter with a gradient. */
  step(): void {
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const p of group.params) {
          if (!p.requiresGrad || !p.grad) continue;
          const grad = p.grad;
          let state = this.state.get(p);
          if (!state) {
            state = { step: 0, tensors: {} };
            this.state.set(p, state);
          }
          const s = state;
          s.step++;
          onReplay(() => s.step++); // a replayed step (lr.compile) counts too
          tidy(() => this.update(p, grad, s, group));
        }
      }
    });
  }

  /** Creates a zero state tensor shaped like `p` (kept out of tidy scopes). */
  protected zerosLike(p: Tensor): Tensor {
    return keep(fromTypedArray(new Float32Array(p.size), p.shape, { device: p.device }));
  }

  /** Drops (disposes) the gradients of every parameter (PyTorch's `set_to_none=True`). */
  zeroGrad(): void {
    for (const g of this.paramGroups) {
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** Bytes held by the optimizer's state tensors. */
  stateBytes(): number {
    let n = 0;
    for (const s of this.state.values()) for (const t of Object.values(s.tensors)) n += t.storage.bytes;
    return n;
  }

  /** The state of one parameter (undefined before its first update). */
  getState(p: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(p);
  }

  /** The learning rate of each group. */
  getLr(): number[] {
    return this.paramGroups.map((g) => g.lr);
  }

  /** Parameters in the numbering `stateDict` uses. */
  protected allParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** State and group options; the tensors are the optimizer's own (do not dispose them). */
  stateDict(): OptimizerStateDict {
    const params = this.allParams();
    const state: OptimizerStateDict['state'] = {};
    params.forEach((p, i) => {
      const s = this.state.get(p);
      if (s) state[String(i)] = { step: s.step, tensors: { ...s.tensors } };
    });
    let next = 0;
    const paramGroups = this.paramGroups.map((g) => {
      const options: Record<string, OptionValue> = {};
      for (const [k, v] of Object.entries(g)) {
        if (k !== 'params' && v !== undefined) options[k] = v as OptionValue;
      }
      return { params: g.params.map(() => next++), options };
    });
    return { state, paramGroups };
  }

  /** Restores state saved by `stateDict` (tensors are copied; host arrays are uploaded). */
  loadStateDict(sd: OptimizerStateDict): void {
    const name = `${this.constructor.name}.loadStateDict`;
    if (sd.paramGroups.length !== this.paramGroups.length) {
      throw new OpError(
        name,
        `expected ${this.paramGroups.length} parameter groups, got ${sd.paramGroups.length}`,
      );
    }
    sd.paramGroups.forEach((g, i) => {
      if (g.params.length !== this.paramGroups[i].params.length) {
        throw new OpError(
          name,
          `group ${i} has ${this.paramGroups[i].params.length} parameters, the state dict ${g.params.length}`,
        );
      }
    });
    const params = this.allParams();
    const restored = new Map<Tensor, ParamState>();
    for (const [key, entry] of Object.entries(sd.state)) {
      const p = params[Number(key)];
      if (!p) throw new OpError(name, `state for parameter ${key}, which does not exist`);
      const tensors: Record<string, Tensor> = {};
      for (const [k, t] of Object.entries(entry.tensors)) {
        if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
          throw new OpError(
            name,
            `state '${key}.${k}' is ${fmtShape(t.shape)}, parameter is ${fmtShape(p.shape)}`,
          );
        }
        if (t instanceof Tensor && t.device !== p.device) {
          throw new OpError(name, `state '${key}.${k}' is on '${t.device}', parameter on '${p.device}'`);
        }
      }
      for (const [k, t] of Object.entries(entry.tensors)) {
        tensors[k] = keep(
          t instanceof Tensor
            ? t.clone()
            : fromTypedArray(t.data, t.shape, { dtype: 'float32', device: p.device }),
        );
      }
      restored.set(p, { step: entry.step, tensors });
    }
    for (const s of this.state.values()) for (const t of Object.values(s.tensors)) t.dispose();
    this.state.clear();
    for (const [p, s] of restored) this.state.set(p, s);
    sd.paramGroups.forEach((g, i) => {
      const group = this.paramGroups[i];
      for (const [k, v] of Object.entries(g.options)) Reflect.set(group, k, Array.isArray(v) ? [...v] : v);
    });
  }

  /** Disposes the state tensors. */
  dispose(): void {
    for (const s of this.state.values()) for (const t of Object.values(s.tensors)) t.dispose();
    this.state.clear();
  }
}
