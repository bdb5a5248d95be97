import type { Backend } from '../backend.js';
import type { DType, TypedArray } from '../dtype.js';
import { captureEpoch } from '../engine/capture.js';
import { realizeUsers } from '../engine/lazy.js';
import { releaseStorage, retainStorage } from '../engine/memory.js';
import { backendIfAny } from '../engine/registry.js';
import { type SlotLease, type SlotMemory, withSlotLeases } from '../engine/slots.js';
import type { Device, Storage } from '../storage.js';
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

/**
 * A value a recorded call makes and where a replay puts it: a slot of the memory plan (an
 * intermediate), or for state the step leaves behind (a gradient), the memory of the storage
 * that keeps it. Nothing in the step reads that storage before the call makes its new value
 * (a step that read it would have read a tensor it later disposed: the trace refuses that), so
 * the kernel writes it in place instead of taking a buffer to swap in.
 */
export interface SlotUse {
  readonly slot: number;
  readonly bytes: number;
  readonly device: Device;
  readonly state: Storage | null;
}

/** The memory of `kept` as a slot: the kernel making its new value writes there. */
function keptMemory(kept: Storage): SlotMemory {
  return {
    bytes: kept.bytes,
    view(_dtype, _size, zeroed) {
      const h = kept.handle as object;
      if (zeroed) (h as TypedArray).fill(0);
      return h;
    },
    free() {},
  };
}

/**
 * One recorded call. `release`: references whose last use it is. `slots`: the slots of the
 * intermediates it makes (leased to it during a replay).
 */
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
      readonly slots: SlotUse[];
      /** The slots of the scratch it takes and gives back within the call. */
      readonly scratch: SlotUse[];
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
      readonly slots: SlotUse[];
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

/** What replays of one capture did with its memory plan. */
export interface SlotStats {
  /** Slots reserved (at the first replay) and held until the capture is dropped. */
  readonly reserved: number;
  /** Bytes they hold. */
  readonly reservedBytes: number;
  /** Slots a backend could not reserve (no `Backend.reserve`): their values take pooled memory. */
  readonly unbound: number;
  /** Planned values a replay's kernel did not allocate from their leased slot (took memory elsewhere). */
  readonly misses: number;
}

export class CapturedStep {
  private disposed = false;
  /** Per slot of the plan: the memory reserved for it (null: unbound), made at the first replay. */
  private slotMemory: (SlotMemory | null)[] | null = null;
  private misses = 0;

  constructor(private readonly parts: StepParts) {}

  get plan(): MemoryPlan {
    return this.parts.plan;
  }

  /** What the replays so far did with the plan's slots. */
  get slotStats(): SlotStats {
    const mem = this.slotMemory ?? [];
    return {
      reserved: mem.filter((m) => m !== null).length,
      reservedBytes: mem.reduce((n, m) => n + (m?.bytes ?? 0), 0),
      unbound: mem.filter((m) => m === null).length,
      misses: this.misses,
    };
  }

  /** The plan's slots, reserved once from their backends. */
  private slots(): (SlotMemory | null)[] {
    if (!this.slotMemory) {
      const plan = this.parts.plan;
      this.slotMemory = plan.slots.map(
        (bytes, i) => backendIfAny(plan.slotDevices[i])?.reserve?.(bytes) ?? null,
      );
    }
    return this.slotMemory;
  }

  /** Why this capture cannot be replayed now, or null when it can. */
  staleReason(): string | null {
    const p = this.parts;
    if (this.disposed) return 'it was disposed';
    if (captureEpoch() !== p.epoch)
      return 'host state changed (adapters, parameters, lr.invalidateCaptures())';
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
        const made = this.leased(call.slots, () => resultStorages(call.run(...args)), call.scratch);
        for (let j = 0; j < call.results.length; j++) {
          const r = call.results[j];
          if (r >= 0) this.produce(r, made[j], refs, held);
        }
        return;
      }
      case 'upload':
        this.produce(call.value, call.backend.upload(call.compute(), call.dtype), refs, held);
        return;
      case 'allocate': {
        const [made] = this.leased(call.slots, () => [call.backend.allocate(call.dtype, call.size)]);
        this.produce(call.value, made, refs, held);
        return;
      }
      case 'host':
        call.run();
        return;
    }
  }

  /**
   * Runs a recorded call with the slots of the values it makes leased to it (the backends'
   * allocators hand out views of them); returns the storages it made. A leased slot a kernel
   * used for a storage it then kept without returning it would be overwritten by the slot's next
   * value: that is an engine bug, and stops the replay.
   */
  private leased(
    uses: readonly SlotUse[],
    run: () => Storage[],
    scratch: readonly SlotUse[] = [],
  ): Storage[] {
    if (uses.length === 0 && scratch.length === 0) return run();
    const memory = this.slots();
    const leases: SlotLease[] = [];
    const lease = (kind: SlotLease['kind'], u: SlotUse) => {
      const m = u.state ? keptMemory(u.state) : memory[u.slot];
      if (m) leases.push({ kind, device: u.device, bytes: u.bytes, memory: m, handle: null, storage: null });
    };
    for (const u of uses) lease('storage', u);
    for (const u of scratch) lease('scratch', u);
    const made = withSlotLeases(leases, run);
    for (const l of leases) {
      if (l.kind === 'scratch') {
        if (l.handle === null) this.misses++;
      } else if (l.storage === null) this.misses++;
      else if (!l.storage.released && !made.includes(l.storage)) {
        throw new Error(
          'internal: a kernel kept a storage it allocated in a memory-plan slot during a replay',
        );
      }
    }
    return made;
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
    for (const m of this.slotMemory ?? []) m?.free();
    this.slotMemory = null;
  }
}
