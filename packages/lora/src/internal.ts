import { F, Module } from '@lowrank/nn';
import { type Generator, getAutogradHooks, OpError, type Tensor, tidy } from '@lowrank/tensor';

/** Runs `fn` with gradient recording off (autograd's noGrad when it is loaded). */
export function noGrad<T>(fn: () => T): T {
  const hooks = getAutogradHooks();
  return hooks ? hooks.noGrad(fn) : fn();
}

export function isGradEnabled(): boolean {
  return getAutogradHooks()?.isGradEnabled() ?? false;
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Holds one parameter named `weight` (so names read `lora_A.default.weight`, as in PEFT). */
class WeightBox extends Module {
  readonly weight: Tensor;
  constructor(t: Tensor) {
    super();
    this.weight = this.registerParameter('weight', t);
  }
}

/**
 * Per-adapter parameters, registered so that checkpoint names match PEFT's:
 * `leaf: 'weight'` gives `lora_A.<adapter>.weight` (a ModuleDict of Linear in PEFT),
 * `leaf: null` gives `lora_embedding_A.<adapter>` (a ParameterDict).
 */
export class AdapterParams extends Module {
  readonly #byName = new Map<string, Tensor>();
  constructor(readonly leaf: 'weight' | null) {
    super();
  }

  get(name: string): Tensor {
    const t = this.#byName.get(name);
    if (!t)
      throw new OpError(
        'lora',
        `no adapter '${name}' in this layer (has: ${[...this.#byName.keys()].join(', ') || 'none'})`,
      );
    return t;
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  set(name: string, t: Tensor): void {
    if (this.#byName.has(name)) this.delete(name);
    if (this.leaf) this.registerModule(name, new WeightBox(t));
    else this.registerParameter(name, t);
    this.#byName.set(name, t);
  }

  delete(name: string): void {
    const t = this.#byName.get(name);
    if (!t) return;
    if (this.leaf) this.registerModule(name, null);
    else this.registerParameter(name, null);
    this.#byName.delete(name);
    t.dispose();
  }
}

/**
 * Runs a composite computation: while gradients may be recorded (recording on and an input
 * requires grad) intermediates stay alive for the graph; otherwise they are freed at once.
 */
export function composite<T extends Tensor>(inputs: readonly (Tensor | null | undefined)[], fn: () => T): T {
  const recorded = isGradEnabled() && inputs.some((t) => t?.requiresGrad === true);
  return recorded ? fn() : tidy(fn);
}

/** Inverted dropout with a host-drawn mask from `gen` (same values on every backend): nn's F.dropout. */
export function dropout(x: Tensor, p: number, training: boolean, gen: Generator): Tensor {
  return F.dropout(x, p, training, { generator: gen });
}
