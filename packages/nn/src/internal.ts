import { getAutogradHooks, type Tensor, tidy } from '@lowrank/tensor';

/**
 * Small helpers shared by the nn package. They talk to autograd only through the tensor
 * package's hook (so nn never needs autograd's internals): with no autograd loaded, gradients
 * are simply never recorded.
 */

/** Runs `fn` with gradient recording off (autograd's `noGrad` when it is loaded). */
export function noGrad<T>(fn: () => T): T {
  const hooks = getAutogradHooks();
  return hooks ? hooks.noGrad(fn) : fn();
}

/** Whether ops are being recorded for autograd right now. */
export function isGradEnabled(): boolean {
  return getAutogradHooks()?.isGradEnabled() ?? false;
}

/**
 * Runs a composite op. When the result may enter an autograd graph (recording is on and some
 * input requires grad) the intermediates are left alive, since the graph may have saved them
 * (an enclosing `tidy` frees them after the step); otherwise they are freed at once.
 */
export function composite<T>(inputs: readonly (Tensor | null | undefined)[], fn: () => T): T {
  const recorded = isGradEnabled() && inputs.some((t) => t?.requiresGrad === true);
  return recorded ? fn() : tidy(fn);
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** The entries of a record or a map, in order. */
export function entriesOf<T>(x: Readonly<Record<string, T>> | ReadonlyMap<string, T>): [string, T][] {
  return isMap(x) ? [...x.entries()] : Object.entries(x);
}

function isMap<T>(x: Readonly<Record<string, T>> | ReadonlyMap<string, T>): x is ReadonlyMap<string, T> {
  return x instanceof Map;
}
