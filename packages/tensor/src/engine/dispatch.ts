import { OpError } from '../errors.js';
import type { Device } from '../storage.js';

/**
 * Op dispatch: `runOp` checks inputs, runs an op's computation with recording paused, and reports
 * the op once to the autograd hook. The autograd package installs itself here; the tensor package
 * only reports which op made which tensor from which inputs, and knows nothing of gradients.
 */

/**
 * A tensor as op dispatch sees it: the Tensor class, described structurally so that this module
 * needs no import of it (tensor.ts imports this one).
 */
export interface RecordedTensor {
  /** The device its values live on. */
  readonly device: Device;
  /** Throws if the tensor was disposed, naming `op`. */
  assertLive(op: string): void;
}

type Tensor = RecordedTensor;

/**
 * The interface the autograd package implements and installs with `setAutogradHooks`; the tensor
 * package calls it at op dispatch and from `Tensor.backward()`.
 */
export interface AutogradHooks {
  /** Called after an op ran; `attrs` are the op's parameters (typed per op in ops/attrs.ts). */
  recordOp(op: string, inputs: readonly Tensor[], output: Tensor, attrs: object): void;
  /** Implements `tensor.backward()`. */
  backward(t: Tensor, gradient: Tensor | undefined, options: { retainGraph?: boolean }): void;
  /** Whether ops are being recorded right now (false inside noGrad). */
  isGradEnabled(): boolean;
  /** Runs fn with recording off. */
  noGrad<T>(fn: () => T): T;
  /** Called when a tensor with a `gradFn` is disposed, so the graph behind it can be released. */
  onDispose?(t: Tensor): void;
}

let hooks: AutogradHooks | null = null;
let recordingPaused = 0;

/**
 * Installs (or, with null, removes) the autograd implementation. Importing `@lowrank/autograd`
 * (or `lowrank`) does this once.
 *
 * @example
 * const hooks = lr.getAutogradHooks();
 * lr.setAutogradHooks(null); // ops are no longer recorded
 * lr.setAutogradHooks(hooks);
 */
export function setAutogradHooks(h: AutogradHooks | null): void {
  hooks = h;
}

/**
 * The installed autograd implementation, or null when none is.
 *
 * @example
 * lr.getAutogradHooks()?.isGradEnabled(); // true
 */
export function getAutogradHooks(): AutogradHooks | null {
  return hooks;
}

/**
 * Runs an op: checks its inputs are live and on one device, runs `compute` with recording paused
 * (so the ops it is built from are not recorded separately), then records the op once.
 *
 * @example
 * // an op built from recorded ops, recorded once under its own name (attrs typed in OpAttrs)
 * const out = lr.runOp('square', [x], {}, () => lr.mul(x, x));
 */
export function runOp<T extends RecordedTensor>(
  op: string,
  inputs: readonly RecordedTensor[],
  attrs: object,
  compute: () => T,
): T {
  checkInputs(op, inputs);
  if (!hooks) return compute();
  recordingPaused++;
  let out: T;
  try {
    out = compute();
  } finally {
    recordingPaused--;
  }
  if (recordingPaused === 0) hooks.recordOp(op, inputs, out, attrs);
  return out;
}

/**
 * Whether an op run now on `inputs` would be recorded for autograd: recording is on (no
 * `noGrad`, not inside another op's computation) and some input requires grad. Fused ops use it
 * to skip residuals only their gradient reads (attention's logsumexp, a norm's mean and 1/σ).
 *
 * @example
 * lr.willRecord([x]); // true when x.requiresGrad and grad mode is on
 */
export function willRecord(inputs: readonly { readonly requiresGrad: boolean }[]): boolean {
  return (
    hooks !== null && recordingPaused === 0 && hooks.isGradEnabled() && inputs.some((t) => t.requiresGrad)
  );
}

/**
 * Runs `fn` with op recording paused (used for work that must not enter the graph).
 *
 * @example
 * const y = lr.withoutRecording(() => w.mul(2)); // not part of any graph
 */
export function withoutRecording<T>(fn: () => T): T {
  recordingPaused++;
  try {
    return fn();
  } finally {
    recordingPaused--;
  }
}

export function checkInputs(op: string, inputs: readonly Tensor[]): void {
  let device: Device | undefined;
  for (const t of inputs) {
    t.assertLive(op);
    if (device === undefined) device = t.device;
    else if (t.device !== device) {
      throw new OpError(op, `expected all tensors on the same device, got '${device}' and '${t.device}'`);
    }
  }
}
