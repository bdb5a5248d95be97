import type { Backend, KernelName, KernelTable } from '../backend.js';
import type { TypedArray } from '../dtype.js';
import type { Device, Storage } from '../storage.js';

/**
 * The engine's side of `lr.compile` (compile/): while a function is being traced, the registry
 * hands out kernels and backends that report every call to the active trace, and a few engine
 * events (a lazy storage adopting a kernel's memory, a host value, a host callback, a guard) are
 * reported too. Everything else in the engine is unaware of tracing. Outside a trace each hook
 * here costs one null check.
 */

/** What an active trace receives (implemented by compile/trace.ts). */
export interface TraceSink {
  /** The kernel `name` of `device` as the trace hands it out: it records each call, then runs `k`. */
  kernel<K extends KernelName>(device: string, name: K, k: KernelTable[K]): KernelTable[K];
  /** The backend as the trace hands it out: uploads and allocations recorded, read-backs refused. */
  backend(b: Backend): Backend;
  /** A lazy storage took the memory a kernel computed for it (engine/memory.ts `adoptMemory`). */
  adopt(target: Storage, fresh: Storage): void;
  /** `s` is about to be written in place (engine/lazy.ts `prepareWrite`). */
  written(s: Storage): void;
  /** A storage was created (lazy ones included): the trace realizes the live ones at its end. */
  created(s: Storage): void;
  /** Whether `s` was created during this trace (else it is external: made before it began). */
  madeHere(s: Storage): boolean;
  /** A host callback to run again, at this point, on every replay. */
  host(run: () => void): void;
  /** `value` was computed by `compute` on the host: kernel arguments holding it are recomputed. */
  hostValue(value: object, compute: () => object): void;
  /** The next upload's data comes from `compute` (a per-call host tensor: random numbers, a mask). */
  hostUpload(compute: () => TypedArray): void;
  /** A condition the capture holds only while it is true (checked before each replay). */
  guard(holds: () => boolean, what: string): void;
  /** The host random generator was drawn from outside a per-call host computation. */
  randomDraw(): void;
  /** The kernel being recorded took `bytes` of scratch memory on `device` (given back within the call). */
  scratch(device: Device, bytes: number): void;
}

let sink: TraceSink | null = null;
/** > 0 while a recorded kernel or a host computation runs: what it does itself is not recorded. */
let opaque = 0;
let epoch = 0;

/** The active trace, or null (the hooks below read it). */
export function activeTrace(): TraceSink | null {
  return opaque === 0 ? sink : null;
}

/**
 * A backend's scratch allocator reports here: inside a recorded kernel of a trace, the trace
 * plans a slot for it (outside a trace: nothing).
 */
export function reportScratch(device: Device, bytes: number): void {
  if (sink !== null && opaque > 0) sink.scratch(device, bytes);
}

/** Starts (a sink) or ends (null) a trace; only compile/ calls it. */
export function setTrace(s: TraceSink | null): void {
  sink = s;
  opaque = 0;
}

/** Runs `fn` with recording hidden (a recorded kernel's own work, a host computation). */
export function opaqueToTrace<T>(fn: () => T): T {
  opaque++;
  try {
    return fn();
  } finally {
    opaque--;
  }
}

/**
 * Whether a function is being traced by `lr.compile` right now (its first compiled call records
 * the kernels it runs). Code whose host-side state a replay would not see checks it.
 *
 * @example
 * lr.isTracing(); // false outside a compiled function's trace
 */
export function isTracing(): boolean {
  return sink !== null;
}

/**
 * Drops every captured step: the next call of each compiled function traces again. The engine
 * calls it on changes a replay could not see (nn: registering a parameter or a module; lora:
 * switching, merging or disabling adapters; `requiresGrad_`). A module's train/eval mode is
 * guarded instead (`captureGuard` where a trace reads `training`).
 *
 * @example
 * model.registerParameter('scale', s); // calls lr.invalidateCaptures() itself
 * lr.invalidateCaptures(); // after changing host state a compiled step reads
 */
export function invalidateCaptures(): void {
  epoch++;
}

/**
 * A counter bumped by `invalidateCaptures()`: a capture made at one value is replayed only
 * while it holds.
 *
 * @example
 * const e = lr.captureEpoch();
 * lr.invalidateCaptures();
 * lr.captureEpoch() === e + 1; // true
 */
export function captureEpoch(): number {
  return epoch;
}

/**
 * Registers `run` to be called again at this point of every replay of the step being traced
 * (outside a trace: nothing). Host bookkeeping a step does, such as an optimizer's step counts,
 * uses it so that replays keep it up to date without running the op code again.
 *
 * @example
 * state.step++;
 * lr.onReplay(() => state.step++);
 */
export function onReplay(run: () => void): void {
  activeTrace()?.host(run);
}

/**
 * A host value that kernels take as a parameter and that changes from call to call (Adam's
 * bias corrections, a scheduled learning rate): returns `compute()`; inside a trace, the kernel
 * calls that receive the returned object get `compute()` again at each replay instead of a
 * baked-in copy.
 *
 * @example
 * const params = lr.hostValue(() => ({ stepSize: group.lr / (1 - beta1 ** state.step) }));
 */
export function hostValue<T extends object>(compute: () => T): T {
  const trace = activeTrace();
  const value = trace ? opaqueToTrace(compute) : compute();
  trace?.hostValue(value, compute);
  return value;
}

/**
 * Marks the next upload of a traced step as computed per call by `compute` (used by
 * `lr.hostTensor`); returns compute's first result.
 */
export function hostUpload(compute: () => TypedArray): TypedArray {
  const trace = activeTrace();
  if (!trace) return compute();
  const data = opaqueToTrace(compute);
  trace.hostUpload(compute);
  return data;
}

/**
 * Inside a trace, keeps the capture only while `holds()` is true: each replay checks it first
 * and traces again when it fails (outside a trace: nothing). For host values baked into kernels
 * that cannot be recomputed per call, such as SGD's learning rate.
 *
 * @example
 * const traced = group.lr;
 * lr.captureGuard(() => group.lr === traced, 'the SGD learning rate');
 */
export function captureGuard(holds: () => boolean, what: string): void {
  activeTrace()?.guard(holds, what);
}
