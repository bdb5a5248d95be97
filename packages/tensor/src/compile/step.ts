import type { Backend } from '../backend.js';
import type { DType, TypedArray } from '../dtype.js';
import { captureEpoch } from '../engine/capture.js';
import { realizeUsers } from '../engine/lazy.js';
import { releaseStorage, retainStorage } from '../engine/memory.js';
import type { Storage } from '../storage.js';
import { Tensor } from '../tensor.js';
import type { MemoryPlan } from './plan.js';
import { resultStorages, type Template } from './template.js';

/**
 * A captured step: the recorded calls of one traced call of a compiled function, and how to
 * replay them. A replay runs the recorded kernels on the same kinds of arguments with no op,
 * autograd or tidy code: each call's arguments are rebuilt from its template over the replay's
 * table of references (inputs, external tensors, constants, and the values earlier calls made),
 * values are released at their planned last use, and the step's outputs come back as tensors.
 */

/** One recorded call. `release`: references whose last use it is. */
export type StepCall =
  | {
      readonly kind: 'kernel';
      readonly name: string;
      readonly run: (...args: unknown[]) => unknown;
      readonly args: readonly unknown[];
      readonly templates: readonly (Template | null)[];
      /** Host values its arguments hold (indices into the step's host computations). */
      readonly host: readonly number[];
      /** Per storage of its result: the reference it makes, or -1 (a storage it was given). */
      readonly results: readonly number[];
      readonly release: number[];
    }
  | {
      readonly kind: 'upload';
      readonly backend: Backend;
      readonly dtype: DType;
      readonly compute: () => TypedArray;
      readonly value: number;
      readonly release: number[];
    }
  | {
      readonly kind: 'allocate';
      readonly backend: Backend;
      readonly dtype: DType;
      readonly size: number;
      readonly value: number;
      readonly release: number[];
    }
  | { readonly kind: 'host'; readonly run: () => void; readonly release: number[] };

/** An output of the step: a tensor view of a reference. */
export interface StepOutput {
  readonly ref: number;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/** What a replay needs besides the calls. */
export interface StepParts {
  readonly calls: readonly StepCall[];
  /** The reference table at the start of a replay: externals, constants and state filled in. */
  readonly base: readonly (Storage | undefined)[];
  readonly inputs: number;
  /** References whose storage a replay keeps (state the step leaves behind): the value is swapped in. */
  readonly state: ReadonlyMap<number, Storage>;
  /** Storages the step reads but did not make: a replay needs them alive. */
  readonly externals: readonly Storage[];
  /** The externals the step writes in place. */
  readonly written: readonly Storage[];
  /** Storages the capture holds (constants, state): released by `dispose`. */
  readonly pinned: readonly Storage[];
  readonly hostComputes: readonly (() => object)[];
  readonly guards: readonly { holds: () => boolean; what: string }[];
  readonly outputs: readonly StepOutput[];
  readonly epoch: number;
  readonly plan: MemoryPlan;
}

export class CapturedStep {
  private disposed = false;

  constructor(private readonly parts: StepParts) {}

  get plan(): MemoryPlan {
    return this.parts.plan;
  }

  /** Why this capture cannot be replayed now, or null when it can. */
  staleReason(): string | null {
    const p = this.parts;
    if (this.disposed) return 'it was disposed';
    if (captureEpoch() !== p.epoch) return 'host state changed (train/eval, adapters, parameters)';
    for (const s of p.externals) if (s.released) return 'a tensor it reads was disposed';
    for (const g of p.guards) if (!g.holds()) return `${g.what} changed`;
    return null;
  }

  /** Runs the recorded calls on `inputs` (storages of the call's tensor arguments, realized). */
  replay(inputs: readonly Storage[]): Tensor[] {
    const p = this.parts;
    // held for the replay: computing a lazy chain below may let go of the last other holder of
    // an external the step reads (a mask buffer's inputs, say)
    for (const s of p.externals) retainStorage(s);
    const refs = p.base.slice() as Storage[];
    for (let i = 0; i < p.inputs; i++) refs[i] = inputs[i];
    const held = new Set<number>();
    const host: object[] = new Array(p.hostComputes.length);
    try {
      // chains still reading tensors the step overwrites are computed first (as an eager write would)
      for (const s of p.written) realizeUsers(s);
      for (const s of p.state.values()) realizeUsers(s);
      for (const call of p.calls) {
        this.run(call, refs, held, host);
        for (const r of call.release) {
          releaseStorage(refs[r]);
          held.delete(r);
        }
      }
      return p.outputs.map((o) => new Tensor(refs[o.ref], o.shape, o.strides, o.offset));
    } finally {
      // outputs hold their storages now; anything else still held (after an error) is let go
      for (const r of held) releaseStorage(refs[r]);
      for (const s of p.externals) releaseStorage(s);
    }
  }

  private run(call: StepCall, refs: Storage[], held: Set<number>, host: object[]): void {
    switch (call.kind) {
      case 'kernel': {
        for (const h of call.host) host[h] = this.parts.hostComputes[h]();
        const args = call.args.map((a, i) => {
          const t = call.templates[i];
          return t ? t(refs, host) : a;
        });
        const made = resultStorages(call.run(...args));
        for (let j = 0; j < call.results.length; j++) {
          const r = call.results[j];
          if (r >= 0) this.produce(r, made[j], refs, held);
        }
        return;
      }
      case 'upload':
        this.produce(call.value, call.backend.upload(call.compute(), call.dtype), refs, held);
        return;
      case 'allocate':
        this.produce(call.value, call.backend.allocate(call.dtype, call.size), refs, held);
        return;
      case 'host':
        call.run();
        return;
    }
  }

  /** Reference `r` is `s` from now on (state: `s`'s memory moves into the kept storage). */
  private produce(r: number, s: Storage, refs: Storage[], held: Set<number>): void {
    const kept = this.parts.state.get(r);
    retainStorage(s);
    if (kept) {
      // the tensors that held the traced value (a gradient, say) see the new one: swap memory
      const old = kept.handle;
      kept.handle = s.handle;
      s.handle = old;
      releaseStorage(s);
      refs[r] = kept;
      return;
    }
    refs[r] = s;
    held.add(r);
  }

  /** Lets go of the constants and state the capture holds. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.parts.pinned) releaseStorage(s);
  }
}
