import { isTracing, setTrace } from '../engine/capture.js';
import { getAutogradHooks } from '../engine/dispatch.js';
import { realize } from '../engine/lazy.js';
import { getDefaultDevice, isFusionEnabled, tidy } from '../engine.js';
import { OpError } from '../errors.js';
import { Tensor } from '../tensor.js';
import type { MemoryPlan } from './plan.js';
import type { CapturedStep, SlotStats } from './step.js';
import { CaptureError, Trace } from './trace.js';

/**
 * `lr.compile`: trace a function of tensors once, then replay what it recorded. The first call
 * per argument signature runs eagerly (the warm-up: optimizer state, caches and lazy
 * initialisation happen there), the next is traced — it runs eagerly too while the engine
 * records every kernel call, upload and allocation — and later calls replay the recording with
 * no op, autograd or tidy code. What a replay cannot see invalidates the capture (the next call
 * traces again): a changed host state (`lr.invalidateCaptures()`, called by adapter switches
 * and parameter registration), a disposed tensor the step reads, or a failed `lr.captureGuard`
 * (nn's modules guard the `training` flag a trace reads, so a replay needs the modes it read). A replay reads the tensors the trace read: one a JS variable held then, even
 * if the variable now holds another, for as long as the old one lives. Keep such tensors in
 * modules (`registerParameter` invalidates) or pass them as arguments.
 */

/** What a compiled function may return: tensors, an array of them, an object of them, or nothing. */
// biome-ignore lint/suspicious/noConfusingVoidType: a step that returns nothing (`() => { … }`) is inferred as returning void
export type CompiledResult = Tensor | readonly Tensor[] | { readonly [k: string]: Tensor } | undefined | void;

/** Options of `compile`. */
export interface CompileOptions {
  /** Eager calls per signature before the trace (default 1: state made by a first step exists then). */
  warmup?: number;
  /** Captures kept, by argument signature (default 8; the least recently used goes first). */
  cacheSize?: number;
  /** Off: every call runs `fn` eagerly (to compare, or to debug a step). Default true. */
  enabled?: boolean;
}

/** Counts of what a compiled function's calls did. */
export interface CompiledStats {
  /** Calls run eagerly (warm-up, or with capture disabled). */
  eager: number;
  /** Calls traced (eagerly run and recorded). */
  traces: number;
  /** Calls replayed. */
  replays: number;
  /** Captures dropped because something a replay depends on changed. */
  invalidations: number;
  /** Why the last capture was dropped (null if none was). */
  lastInvalidation: string | null;
}

/** A compiled function: call it like `fn`; it also reports its capture. */
export interface CompiledFunction<A extends readonly Tensor[], R extends CompiledResult> {
  (...args: A): R;
  /** The memory plan of the most recent capture (null before the first trace). */
  memoryPlan(): MemoryPlan | null;
  /**
   * What the most recent capture's replays did with its plan: the slots reserved (at the first
   * replay, held until the capture is dropped) and the planned values that missed theirs (null
   * before the first trace).
   */
  slotStats(): SlotStats | null;
  /** What its calls did so far. */
  readonly stats: Readonly<CompiledStats>;
  /** Turns capture on or off (off: eager calls; the captures are dropped). */
  setEnabled(on: boolean): void;
  /** Drops every capture (and the memory they hold); later calls warm up and trace again. */
  dispose(): void;
}

interface CacheEntry {
  calls: number;
  step: CapturedStep | null;
  /** Where each output of the traced call went (a replay's outputs are put back the same way). */
  shape: ResultShape | null;
}

/**
 * Compiles `fn`, a function of tensors with fixed shapes (typically a whole training step:
 * forward, backward and optimizer step), into one that replays its recorded kernels. See the
 * module comment for the warm-up, trace and replay sequence and what invalidates a capture.
 * Inside `fn`: no reading of values (`item`, `toArray`: refused with an error), random numbers
 * through lr.rand/randn/randint/hostTensor (drawn again per replay), host values kernels take
 * through `lr.hostValue`, host bookkeeping through `lr.onReplay`. Outputs are new tensors on
 * every call. Like `lr.tidy(fn)`, a call disposes the tensors `fn` made and neither returned
 * nor kept (`lr.keep`; gradients and optimizer state are kept): a replay makes no others.
 *
 * @example
 * const w = lr.tensor([1, 2, 3], { requiresGrad: true });
 * const step = lr.compile((x: lr.Tensor) => {
 *   const loss = x.mul(w).sum();
 *   loss.backward();
 *   return loss;
 * });
 * step(lr.tensor([1, 1, 1])); // eager (warm-up)
 * step(lr.tensor([1, 1, 1])); // traced
 * await step(lr.tensor([2, 0, 0])).item(); // replayed: 2
 * step.memoryPlan()?.peakBytes; // bytes live at the step's worst point
 */
export function compile<A extends readonly Tensor[], R extends CompiledResult>(
  fn: (...args: A) => R,
  options: CompileOptions = {},
): CompiledFunction<A, R> {
  const warmup = options.warmup ?? 1;
  const cacheSize = options.cacheSize ?? 8;
  if (!(Number.isInteger(warmup) && warmup >= 0))
    throw new OpError('compile', `warmup must be an integer ≥ 0, got ${warmup}`);
  if (!(Number.isInteger(cacheSize) && cacheSize >= 1))
    throw new OpError('compile', `cacheSize must be an integer ≥ 1, got ${cacheSize}`);
  let enabled = options.enabled ?? true;
  const cache = new Map<string, CacheEntry>();
  let lastStep: CapturedStep | null = null;
  const stats: CompiledStats = { eager: 0, traces: 0, replays: 0, invalidations: 0, lastInvalidation: null };

  const dropAll = () => {
    for (const e of cache.values()) e.step?.dispose();
    cache.clear();
  };

  const call = (...args: A): R => {
    // inside another trace the outer one records these kernels; a replay would hide them from it
    if (!enabled || isTracing()) {
      stats.eager++;
      return tidy(() => fn(...args));
    }
    const key = signature(args);
    let entry = cache.get(key);
    if (entry) {
      cache.delete(key); // re-inserted below: most recently used last
    } else {
      entry = { calls: 0, step: null, shape: null };
      if (cache.size >= cacheSize) {
        const [oldKey, old] = cache.entries().next().value as [string, CacheEntry];
        old.step?.dispose();
        cache.delete(oldKey);
      }
    }
    cache.set(key, entry);
    const storages = args.map((t) => {
      realize(t.storage);
      return t.storage;
    });
    if (entry.step) {
      const stale = entry.step.staleReason();
      if (stale === null) {
        stats.replays++;
        const tensors = entry.step.replay(storages);
        if (!entry.shape) throw new Error('internal: a capture without a result shape');
        return unflattenResult(entry.shape, tensors) as R;
      }
      entry.step.dispose();
      entry.step = null;
      entry.calls = warmup; // what the warm-up made exists: trace at once
      stats.invalidations++;
      stats.lastInvalidation = stale;
    }
    if (entry.calls < warmup) {
      entry.calls++;
      stats.eager++;
      return tidy(() => fn(...args));
    }
    const trace = new Trace(storages);
    setTrace(trace);
    let result: R;
    try {
      result = tidyResult(() => fn(...args));
      const { tensors, shape } = flattenResult(result);
      entry.shape = shape;
      entry.step = trace.finish(tensors);
    } catch (e) {
      trace.abort();
      throw e;
    } finally {
      setTrace(null);
    }
    entry.calls++;
    stats.traces++;
    lastStep = entry.step;
    return result;
  };

  const compiled = call as CompiledFunction<A, R>;
  compiled.memoryPlan = () => lastStep?.plan ?? null;
  compiled.slotStats = () => lastStep?.slotStats ?? null;
  Object.defineProperty(compiled, 'stats', { get: () => ({ ...stats }) });
  compiled.setEnabled = (on: boolean) => {
    enabled = on;
    if (!on) dropAll();
  };
  compiled.dispose = dropAll;
  return compiled;
}

/** `tidy(fn)`, with a Promise turned into the compile error (tidy's own names tidy). */
function tidyResult<R>(fn: () => R): R {
  let promised = false;
  try {
    return tidy(() => {
      const r = fn();
      promised = r instanceof Promise;
      return r;
    });
  } catch (e) {
    if (promised)
      throw new CaptureError(
        'the function returned a Promise: compile synchronous steps (await outside them)',
      );
    throw e;
  }
}

function signature(args: readonly Tensor[]): string {
  let key = `${getDefaultDevice()}|${getAutogradHooks()?.isGradEnabled() ?? false}|${isFusionEnabled()}`;
  args.forEach((t, i) => {
    if (!(t instanceof Tensor)) {
      throw new CaptureError(
        `argument ${i} is ${t === null ? 'null' : typeof t}, not a tensor: a compiled function takes tensors ` +
          '(pass per-call numbers as tensors, or read host values inside it with lr.hostValue)',
      );
    }
    t.assertLive('compile');
    key += `|${t.device}:${t.dtype}:${t.shape.join('x')}:${t.strides.join(',')}:${t.offset}:${t.storage.size}:${t.requiresGrad}`;
  });
  return key;
}

type ResultShape =
  | { kind: 'none' }
  | { kind: 'tensor' }
  | { kind: 'array'; length: number }
  | { kind: 'object'; keys: string[] };

function flattenResult(result: CompiledResult): { tensors: Tensor[]; shape: ResultShape } {
  if (result === undefined) return { tensors: [], shape: { kind: 'none' } };
  if (result instanceof Tensor) return { tensors: [result], shape: { kind: 'tensor' } };
  const bad = (what: string) =>
    new CaptureError(
      `the function returned ${what}: compiled functions return tensors, arrays or objects of tensors`,
    );
  if (Array.isArray(result)) {
    if (!result.every((t) => t instanceof Tensor)) throw bad('an array holding a non-tensor');
    return { tensors: [...result], shape: { kind: 'array', length: result.length } };
  }
  if (result !== null && typeof result === 'object' && Object.getPrototypeOf(result) === Object.prototype) {
    const record = result as { readonly [k: string]: unknown };
    const keys = Object.keys(record);
    const tensors = keys.map((k) => record[k]);
    if (!tensors.every((t) => t instanceof Tensor)) throw bad('an object holding a non-tensor');
    return { tensors: tensors as Tensor[], shape: { kind: 'object', keys } };
  }
  throw bad(result === null ? 'null' : typeof result);
}

function unflattenResult(shape: ResultShape, tensors: Tensor[]): CompiledResult {
  switch (shape.kind) {
    case 'none':
      return undefined;
    case 'tensor':
      return tensors[0];
    case 'array':
      return tensors;
    case 'object':
      return Object.fromEntries(shape.keys.map((k, i) => [k, tensors[i]]));
  }
}
