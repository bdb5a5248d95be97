import type { Backend, KernelName, KernelTable } from '../backend.js';
import type { DType, TypedArray } from '../dtype.js';
import { captureEpoch, opaqueToTrace, type TraceSink } from '../engine/capture.js';
import { realize } from '../engine/lazy.js';
import { lazyOf, releaseStorage, retainStorage } from '../engine/memory.js';
import { OpError } from '../errors.js';
import type { Device, Storage } from '../storage.js';
import type { Tensor } from '../tensor.js';
import { assignSlots, type PlanValue, planMemory } from './plan.js';
import { CapturedStep, type SlotUse, type StepCall, type StepOutput } from './step.js';
import { resultStorages, type TemplateScope, template } from './template.js';

/**
 * The recording side of `lr.compile`: a TraceSink that the engine reports to while the
 * function runs eagerly once. It names every storage the calls touch — an input, an external
 * tensor (made before the trace: parameters, optimizer state), a constant uploaded while
 * tracing, or a value a recorded call made — and ends in a `CapturedStep`.
 */

type RefKind = 'input' | 'external' | 'constant' | 'value';

interface Ref {
  readonly kind: RefKind;
  /** The storages that are this reference (a kernel's result and the lazy storage that adopted it). */
  readonly storages: Storage[];
  readonly def: number;
  lastUse: number;
}

/** An error of a function `lr.compile` cannot capture (what it did, and what to do instead). */
export class CaptureError extends OpError {
  constructor(message: string) {
    super('compile', message);
    this.name = 'CaptureError';
  }
}

export class Trace implements TraceSink {
  private readonly calls: StepCall[] = [];
  private readonly refs: Ref[] = [];
  private readonly refOf = new Map<Storage, number>();
  private readonly hostIndex = new Map<object, number>();
  private readonly hostComputes: (() => object)[] = [];
  private readonly guards: { holds: () => boolean; what: string }[] = [];
  /** Storages created while tracing, in creation order (a Set iterates in insertion order). */
  private readonly made = new Set<Storage>();
  private readonly backends = new Map<Backend, Backend>();
  private pendingUpload: (() => TypedArray) | null = null;
  /** Storages written in place by the step (their lazy readers are computed before a replay). */
  private readonly writes = new Set<Storage>();
  /** Constants uploaded while tracing, held by the trace (then by the capture). */
  private readonly constants: Storage[] = [];
  /** A refusal raised inside the function (it may have been caught there): the trace fails with it. */
  private refused: CaptureError | null = null;
  /** References made by uploads of per-call host data (they take no slot: see PlanValue). */
  private readonly uploaded = new Set<number>();
  /** Scratch the recorded kernels took (call index, bytes, device): each gets a slot too. */
  private readonly scratchTaken: { call: number; bytes: number; device: Device }[] = [];

  constructor(inputs: readonly Storage[]) {
    for (const s of inputs) {
      if (this.refOf.has(s)) throw new CaptureError('two arguments share one storage: pass distinct tensors');
      this.addRef('input', s, -1);
    }
  }

  private addRef(kind: RefKind, s: Storage, def: number): number {
    const r = this.refs.length;
    this.refs.push({ kind, storages: [s], def, lastUse: def });
    this.refOf.set(s, r);
    return r;
  }

  /** The reference of `s` read at call `at` (an external one when the trace has not seen it). */
  private use(s: Storage, at: number): number {
    const r = this.refOf.get(s) ?? this.addRef('external', s, -1);
    const ref = this.refs[r];
    if (at > ref.lastUse) ref.lastUse = at;
    return r;
  }

  // ---- TraceSink

  kernel<K extends KernelName>(_device: string, name: K, k: KernelTable[K]): KernelTable[K] {
    const run = k as unknown as (...args: unknown[]) => unknown;
    return ((...args: unknown[]) => this.recordKernel(name, run, args)) as unknown as KernelTable[K];
  }

  private recordKernel(name: string, run: (...args: unknown[]) => unknown, args: unknown[]): unknown {
    const at = this.calls.length;
    const host = new Set<number>();
    const scope: TemplateScope = {
      ref: (s) => this.use(s, at),
      hostValue: (v) => {
        const h = this.hostIndex.get(v) ?? -1;
        if (h >= 0) host.add(h);
        return h;
      },
    };
    const templates = args.map((a) => template(a, scope));
    const result = opaqueToTrace(() => run(...args));
    const results = resultStorages(result).map((s) => (this.refOf.has(s) ? -1 : this.addRef('value', s, at)));
    this.calls.push({
      kind: 'kernel',
      name,
      run,
      args,
      templates,
      host: [...host],
      results,
      release: [],
      slots: [],
      scratch: [],
    });
    return result;
  }

  backend(b: Backend): Backend {
    let wrapped = this.backends.get(b);
    if (!wrapped) {
      const overrides: Partial<Backend> = {
        upload: (data, dtype) => this.recordUpload(b, data, dtype),
        allocate: (dtype, size) => this.recordAllocate(b, dtype, size),
        read: () => {
          // reads are asynchronous: the error may only reject a promise the function ignores,
          // so the trace remembers it and fails at its end too
          this.refused ??= new CaptureError(
            'the function read tensor values (item, toArray, data) while being traced: a replay runs ' +
              'the recorded kernels and cannot branch on values. Return the tensor and read it after ' +
              'the call, or run this code outside the compiled function.',
          );
          throw this.refused;
        },
      };
      wrapped = new Proxy(b, {
        get(target, prop) {
          const o = overrides[prop as keyof Backend];
          if (o !== undefined) return o;
          const v = Reflect.get(target, prop, target);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      this.backends.set(b, wrapped);
    }
    return wrapped;
  }

  private recordUpload(b: Backend, data: TypedArray, dtype: DType): Storage {
    const compute = this.pendingUpload;
    this.pendingUpload = null;
    const s = opaqueToTrace(() => b.upload(data, dtype));
    const at = this.calls.length;
    if (!compute) {
      // data fixed at trace time (a scalar, an index table): uploaded once, kept for every replay
      // (held from now: the step may dispose its tensor before the trace ends)
      retainStorage(s);
      this.constants.push(s);
      this.addRef('constant', s, at);
      return s;
    }
    const value = this.addRef('value', s, at);
    this.uploaded.add(value);
    this.calls.push({ kind: 'upload', backend: b, dtype, compute, value, release: [] });
    return s;
  }

  private recordAllocate(b: Backend, dtype: DType, size: number): Storage {
    const s = opaqueToTrace(() => b.allocate(dtype, size));
    const at = this.calls.length;
    const value = this.addRef('value', s, at);
    this.calls.push({ kind: 'allocate', backend: b, dtype, size, value, release: [], slots: [] });
    return s;
  }

  adopt(target: Storage, fresh: Storage): void {
    const r = this.refOf.get(fresh);
    if (r === undefined) return;
    this.refOf.set(target, r);
    this.refs[r].storages.push(target);
  }

  written(s: Storage): void {
    this.writes.add(s);
  }

  created(s: Storage): void {
    this.made.add(s);
  }

  madeHere(s: Storage): boolean {
    return this.made.has(s);
  }

  host(run: () => void): void {
    this.calls.push({ kind: 'host', run, release: [] });
  }

  hostValue(value: object, compute: () => object): void {
    this.hostIndex.set(value, this.hostComputes.length);
    this.hostComputes.push(compute);
  }

  hostUpload(compute: () => TypedArray): void {
    this.pendingUpload = compute;
  }

  guard(holds: () => boolean, what: string): void {
    this.guards.push({ holds, what });
  }

  scratch(device: Device, bytes: number): void {
    // reported while a recorded kernel runs, before its call is pushed: it belongs to that call
    this.scratchTaken.push({ call: this.calls.length, bytes, device });
  }

  randomDraw(): void {
    this.refused ??= new CaptureError(
      'the function drew host random numbers directly while being traced: a replay would repeat ' +
        'them. Make random tensors with lr.rand/randn/randint/hostTensor (F.dropout does), which ' +
        'draw again at every replay.',
    );
    throw this.refused;
  }

  // ---- the end of the trace

  /** Ends the trace of a call that returned `outputs`: the captured step. */
  finish(outputs: readonly Tensor[]): CapturedStep {
    if (this.refused) throw this.refused;
    // work still pending in lazy chains that outlive the call belongs to the step
    for (const t of outputs) realize(t.storage);
    for (const s of this.made) if (!s.released && lazyOf(s)) realize(s);
    const end = this.calls.length;
    const stepOutputs: StepOutput[] = outputs.map((t) => ({
      ref: this.use(t.storage, end),
      shape: t.shape,
      strides: t.strides,
      offset: t.offset,
    }));
    const outputRefs = new Set(stepOutputs.map((o) => o.ref));
    const base: (Storage | undefined)[] = [];
    const state = new Map<number, Storage>();
    const externals: Storage[] = [];
    const pinned: Storage[] = [];
    const values: PlanValue[] = [];
    /** The reference of each entry of `values`. */
    const valueRefs: number[] = [];
    let externalBytes = 0;
    this.refs.forEach((ref, r) => {
      const live = ref.storages.find((s) => !s.released);
      if (ref.kind === 'external' || ref.kind === 'input') {
        if (!live) {
          throw new CaptureError(
            'the function disposed a tensor it read but did not make (as gradients accumulated ' +
              'across calls are): a replay could not read it again. Zero gradients ' +
              '(optimizer.zeroGrad()) before or inside the step.',
          );
        }
        externalBytes += live.bytes;
        if (ref.kind === 'external') {
          externals.push(live);
          base[r] = live;
        }
        return;
      }
      const bytes = ref.storages[0].bytes;
      const device = ref.storages[0].device;
      valueRefs.push(r);
      if (ref.kind === 'constant') {
        const s = ref.storages[0];
        pinned.push(s);
        base[r] = s;
        values.push({ bytes, def: ref.def, lastUse: end, kind: 'constant', device });
        return;
      }
      // an output only the returned tensors hold is the caller's; anything else that outlives
      // the call (a gradient, an updated buffer) is state: kept, and each replay swaps the new
      // value's memory into it so the tensors holding it see the new value
      const viewers = outputs.filter((t) => t.storage === live).length;
      if (live && !(outputRefs.has(r) && live.refs === viewers)) {
        retainStorage(live);
        pinned.push(live);
        state.set(r, live);
        base[r] = live;
        values.push({ bytes, def: ref.def, lastUse: end, kind: 'state', device });
        return;
      }
      if (outputRefs.has(r)) {
        values.push({ bytes, def: ref.def, lastUse: end, kind: 'output', device });
        return;
      }
      const kind = this.uploaded.has(r) ? 'upload' : 'intermediate';
      values.push({ bytes, def: ref.def, lastUse: ref.lastUse, kind, device });
      this.calls[Math.max(ref.def, ref.lastUse)].release.push(r);
    });
    // a kernel's scratch lives within its call
    for (const t of this.scratchTaken) {
      valueRefs.push(-1);
      values.push({ bytes: t.bytes, def: t.call, lastUse: t.call, kind: 'intermediate', device: t.device });
    }
    // each call that makes an intermediate learns its slot: a replay leases it for the call
    const assigned = assignSlots(values);
    const { slotOf } = assigned;
    const slotUse = new Map<number, SlotUse>();
    const firstScratch = values.length - this.scratchTaken.length;
    this.scratchTaken.forEach((t, j) => {
      const c = this.calls[t.call];
      if (c.kind === 'kernel')
        c.scratch.push({ slot: slotOf[firstScratch + j], bytes: t.bytes, device: t.device, state: null });
    });
    values.forEach((v, i) => {
      const r = valueRefs[i];
      if (r < 0) return;
      const kept = state.get(r) ?? null;
      if (slotOf[i] >= 0 || kept)
        slotUse.set(r, { slot: slotOf[i], bytes: v.bytes, device: v.device, state: kept });
    });
    for (const c of this.calls) {
      if (c.kind === 'kernel') {
        for (const r of c.results) {
          const u = r >= 0 ? slotUse.get(r) : undefined;
          if (u) c.slots.push(u);
        }
      } else if (c.kind === 'allocate') {
        const u = slotUse.get(c.value);
        if (u) c.slots.push(u);
      }
    }
    return new CapturedStep({
      calls: this.calls,
      base,
      inputs: this.refs.filter((r) => r.kind === 'input').length,
      state,
      externals,
      written: externals.filter((x) => this.writes.has(x)),
      pinned,
      hostComputes: this.hostComputes,
      guards: this.guards,
      outputs: stepOutputs,
      epoch: captureEpoch(),
      plan: planMemory(values, end, externalBytes, assigned),
    });
  }

  /** Lets go of what a failed trace holds (the constants it uploaded). */
  abort(): void {
    this.made.clear();
    for (const s of this.constants) releaseStorage(s);
  }
}
