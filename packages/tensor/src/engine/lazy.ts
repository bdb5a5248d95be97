import type { DType } from '../dtype.js';
import { OpError } from '../errors.js';
import { composeView, type Layout } from '../expr/compose.js';
import { type ElementwiseProgram, type Expr, exprSize, type RandomLeaf } from '../expr/program.js';
import { sizeOf } from '../shape.js';
import { type Device, Storage, type View } from '../storage.js';
import { activeTrace, opaqueToTrace } from './capture.js';
import { adoptMemory, lazyOf, newStorage, releaseLazyInputs, retainLazyInputs, setLazy } from './memory.js';
import { getBackend, getKernel } from './registry.js';

/**
 * Lazy fusion. An elementwise op does not run: it returns a tensor over a *lazy* storage that
 * holds the program computing it. Programs read other storages through strided views, lazy ones
 * included, so a chain of elementwise ops (with the views between them) is a tree of programs.
 * When something needs the values (a kernel other than an elementwise one, a read-back, an
 * in-place write to an input, or the chain-length cap), the tree is flattened into one program
 * over real memory and runs as one kernel. Intermediates that are never needed take no memory.
 *
 * Autograd is unaffected: ops are recorded as they are called, and the tensors it saves are views
 * of lazy storages like any other, computed when backward reads them (usually inlined into the
 * gradient's own fused kernel).
 */

const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
let fusion = env?.LOWRANK_FUSION !== '0';
let computeSaved = env?.LOWRANK_COMPUTE_SAVED === '1';

/** Options of `setFusion`. */
export interface FusionOptions {
  /**
   * Compute a lazy tensor when autograd saves it for backward (default false: it stays lazy and
   * is usually recomputed inside the gradient's own fused kernel, which stores less: on GPT-2
   * 124M LoRA at 8×512 the peak fell from 13.1 to 7.6 GiB). Also `LOWRANK_COMPUTE_SAVED=1`.
   */
  computeSaved?: boolean;
}

/**
 * Turns lazy fusion on (the default) or off. Off, every elementwise op runs its own kernel at
 * once, as an eager engine would: use it to bisect a problem (results must agree), or set the
 * environment variable `LOWRANK_FUSION=0` before the engine loads.
 *
 * @example
 * lr.setFusion(false); // one kernel per op from now on
 * const y = x.mul(2).add(1); // two kernels
 * lr.setFusion(true);
 * lr.setFusion(true, { computeSaved: true }); // tensors saved for backward are computed at once
 */
export function setFusion(on: boolean, options: FusionOptions = {}): void {
  fusion = on;
  if (options.computeSaved !== undefined) computeSaved = options.computeSaved;
}

/**
 * Whether elementwise chains are fused (see `setFusion`).
 *
 * @example
 * lr.isFusionEnabled(); // true unless LOWRANK_FUSION=0
 */
export function isFusionEnabled(): boolean {
  return fusion;
}

/**
 * The program that will compute `storage`, or null once it holds memory: for learners and
 * debugging (what a chain fused into), not needed to use the engine.
 *
 * @example
 * const y = lr.tensor([1, 2]).mul(2);
 * lr.exprKey(lr.pendingProgram(y.storage)!.root); // "mul(L0,L1)"
 */
export function pendingProgram(storage: Storage): ElementwiseProgram | null {
  return lazyOf(storage)?.program ?? null;
}

/**
 * Called by autograd for each tensor it saves for backward: computes a lazy one when the
 * `computeSaved` option asks for it (see `setFusion`), else leaves it lazy.
 *
 * @example
 * lr.onSavedForBackward(y.storage); // what autograd does when a rule saves y
 */
export function onSavedForBackward(storage: Storage): void {
  if (computeSaved) realize(storage);
}

/**
 * How many kernels have inlined each lazy storage so far. A chain reading three or more stored
 * tensors that a second kernel would inline again is computed instead, once, and read as memory
 * from then on: recomputing reads ≥ 3 tensors where computing it wrote one and reading it back
 * reads one. Without this a residual stream (x + attn + mlp + attn + …) that nothing else computes
 * is re-summed from all its terms by every norm that reads it, forward and backward: on the
 * SmolLM2-shaped Llama step the norms read up to 12 tensors each, 4.4 ms of a 120 ms step. A
 * chain over one or two tensors (exp(x − max) in a softmax over dim 0) is cheaper to recompute.
 */
const inlinedBy = new WeakMap<Storage, number>();
/** Stored tensors a chain reads from which a second inlining computes it instead. */
const REUSED_CHAIN_READS = 3;

/** Whether the chain of a lazy storage reads at least `n` stored (non-lazy) storages. */
function readsAtLeast(storage: Storage, n: number): boolean {
  const seen = new Set<Storage>();
  const real = new Set<Storage>();
  const visit = (s: Storage): boolean => {
    if (seen.has(s)) return false;
    seen.add(s);
    const lazy = lazyOf(s);
    if (!lazy) {
      real.add(s);
      return real.size >= n;
    }
    return lazy.program.inputs.some((v) => visit(v.storage));
  };
  return visit(storage);
}

/** Ops and casts a chain may hold before its lazy inputs are computed (bounds kernel size). */
export const MAX_CHAIN_NODES = 48;
/** Nodes of one flattened kernel, inlined chains included. */
const MAX_KERNEL_NODES = 96;

/**
 * A new lazy storage computing `program` (whose inputs may be lazy). The caller wraps it in a
 * tensor. With fusion off, or when the chain grew past the cap, work is done now.
 */
export function lazyStorage(op: string, device: Device, program: ElementwiseProgram): Storage {
  let nodes = chainNodes(program);
  if (nodes > MAX_CHAIN_NODES) {
    // compute the longest lazy inputs first until the chain fits
    const lazies = [...new Set(program.inputs.map((v) => v.storage))].filter((s) => lazyOf(s));
    lazies.sort((a, b) => (lazyOf(b)?.nodes ?? 0) - (lazyOf(a)?.nodes ?? 0));
    for (const s of lazies) {
      if (nodes <= MAX_CHAIN_NODES) break;
      realize(s);
      nodes = chainNodes(program);
    }
  }
  const dtype = program.root.dtype;
  const size = sizeOf(program.shape);
  const backend = getBackend(device);
  const bytes = backend.storageBytes(dtype, size);
  // a tensor too large for the device is refused now, naming the op, not when it is computed
  backend.checkStorageBytes(op, bytes);
  const storage = newStorage(device, dtype, size, bytes, null);
  setLazy(storage, { program, op, nodes });
  retainLazyInputs(storage);
  if (!fusion) realize(storage);
  return storage;
}

function chainNodes(program: ElementwiseProgram): number {
  let n = exprSize(program.root);
  for (const s of new Set(program.inputs.map((v) => v.storage))) n += lazyOf(s)?.nodes ?? 0;
  return n;
}

/**
 * Computes a lazy storage (no-op for a real one): flattens its program tree into one program over
 * real memory and runs the backend's elementwise kernel; every view of the storage then reads
 * the values. Errors name the op the user called.
 *
 * @example
 * const y = x.mul(2).exp(); // lazy: nothing ran yet
 * lr.realize(y.storage); // one fused kernel computes it
 */
export function realize(storage: Storage): void {
  const lazy = lazyOf(storage);
  if (!lazy) return;
  // a lazy storage made before the trace (a new adapter's B = 0, say) is computed outside the
  // recording: it is an external the replays read, not a value they recompute on every call
  const trace = activeTrace();
  if (trace && !trace.madeHere(storage)) {
    opaqueToTrace(() => realize(storage));
    return;
  }
  const program = flatten(lazy.program, storage.device, undefined, { random: true });
  let fresh: Storage;
  try {
    fresh = getKernel(lazy.op, storage.device, 'elementwise')(program);
  } catch (e) {
    // the user called `lazy.op`, not the fused kernel: say so
    if (e instanceof OpError && e.op !== lazy.op)
      throw new OpError(lazy.op, e.message.slice(e.op.length + 2));
    throw e;
  }
  adoptMemory(storage, fresh);
  releaseLazyInputs(storage);
}

/** Computes every lazy storage that reads `storage` (before `storage` is written in place). */
export function realizeUsers(storage: Storage): void {
  if (!storage.users) return;
  for (const user of [...storage.users]) realize(user);
}

/** Makes `storage` real and safe to overwrite: it is computed, and so is every chain reading it. */
export function prepareWrite(storage: Storage): void {
  activeTrace()?.written(storage);
  realize(storage);
  realizeUsers(storage);
}

/** A view ready for a kernel: its storage computed. */
export function realView(v: View): View {
  realize(v.storage);
  return v;
}

/** Options of `flatten`. */
export interface FlattenOptions {
  /**
   * The kernel evaluates random nodes (the elementwise kernel does): chains holding random draws
   * are inlined. Default false: such chains are computed first and read as memory (reductions,
   * norms and softmax prologues take no random nodes).
   */
  random?: boolean;
}

/**
 * One program over real memory that computes `program`: lazy inputs are inlined (their views
 * composed with the view that reads them) where the backend's input limit and the node cap
 * allow, and computed first otherwise. `maxInputs` (default: the backend's `maxFusedInputs`) is
 * lower for a kernel that binds more than one program (a norm's backward reads x and its gradient).
 */
export function flatten(
  program: ElementwiseProgram,
  device: Device,
  maxInputs?: number,
  options: FlattenOptions = {},
): ElementwiseProgram {
  const max = maxInputs ?? getBackend(device).maxFusedInputs;
  // inlined chains may use up the limit before the root's last inputs are loaded: then try again
  // leaving them room (chains computed by a failed try stay computed; the root has ≤ 3 inputs)
  for (let cap = max; ; cap--) {
    const b = new Builder(Math.max(0, cap), options.random ?? false);
    const root = b.inline(program, (v) => v, true);
    if (!root) throw new Error('internal: the outermost program always flattens');
    if (b.storageCount <= max || cap <= 0) {
      for (const s of new Set(b.inlined)) inlinedBy.set(s, (inlinedBy.get(s) ?? 0) + 1);
      const out = { root, inputs: b.inputs, consts: b.consts, shape: program.shape };
      return b.rng.length > 0 ? { ...out, rng: b.rng } : out;
    }
  }
}

/**
 * The storage of the views that carry a random leaf's positions through `composeView` (a view
 * maps element positions to memory offsets; a leaf's "memory" is its draw's counter space).
 */
const POSITIONS = new Storage('cpu', 'float32', 0, 0, null);

class Builder {
  readonly inputs: View[] = [];
  readonly consts: number[] = [];
  readonly rng: RandomLeaf[] = [];
  /** The lazy storages whose programs were inlined (counted in `inlinedBy` once this flattens). */
  readonly inlined: Storage[] = [];
  private readonly index = new Map<string, number>();
  private readonly storages = new Map<Storage, number>();
  private nodes = 0;
  /** Set while a view that did not compose with the root's fails the chains above it (see `load`). */
  private composeFailed = false;

  constructor(
    private readonly maxStorages: number,
    private readonly random: boolean,
  ) {}

  get storageCount(): number {
    return this.storages.size;
  }

  /**
   * The expression of `p` with its loads rewritten to read root-space views (`toRoot` maps a view
   * over p's shape to one over the root shape, or null). Null when it does not fit or a view does
   * not compose: then nothing was added. `force` is for the root program, which always fits.
   */
  inline(p: ElementwiseProgram, toRoot: (v: View) => View | null, force: boolean): Expr | null {
    const mark = {
      inputs: this.inputs.length,
      consts: this.consts.length,
      rng: this.rng.length,
      nodes: this.nodes,
      inlined: this.inlined.length,
    };
    const consts = p.consts.map((v) => this.constant(v));
    const visit = (e: Expr): Expr | null => {
      switch (e.kind) {
        case 'const':
          return { kind: 'const', index: consts[e.index], dtype: e.dtype };
        case 'cast': {
          this.nodes++;
          const arg = visit(e.arg);
          return arg && { kind: 'cast', arg, dtype: e.dtype };
        }
        case 'op': {
          this.nodes++;
          const args: Expr[] = [];
          for (const a of e.args) {
            const v = visit(a);
            if (!v) return null;
            args.push(v);
          }
          return { kind: 'op', op: e.op, args, dtype: e.dtype };
        }
        case 'load':
          return this.load(p.inputs[e.input], toRoot, force);
        case 'random': {
          this.nodes++;
          const index = this.randomLeaf(p, e.index, toRoot);
          return index === null ? null : { kind: 'random', index, dist: e.dist, dtype: e.dtype };
        }
      }
    };
    const out = visit(p.root);
    const fits = this.nodes <= MAX_KERNEL_NODES && this.storages.size <= this.maxStorages;
    if (out && (fits || force)) return out;
    this.rollback(mark);
    return null;
  }

  private load(v: View, toRoot: (v: View) => View | null, force: boolean): Expr | null {
    const lazy = lazyOf(v.storage);
    if (lazy && (inlinedBy.get(v.storage) ?? 0) > 0 && readsAtLeast(v.storage, REUSED_CHAIN_READS)) {
      realize(v.storage); // a second kernel reads this chain: compute it once
    } else if (lazy) {
      // read the lazy input's own inputs through v: inner views compose with v, then go to root
      const layout: Layout = v;
      const inner = lazy.program;
      const nested = (w: View) => {
        const mid = composeView(layout, inner.shape, w);
        return mid && toRoot(mid);
      };
      const outer = this.composeFailed;
      this.composeFailed = false;
      const e = this.inline(inner, nested, false);
      const failed = !e && this.composeFailed;
      this.composeFailed = outer;
      if (e) {
        this.inlined.push(v.storage);
        return e;
      }
      // inside an inlined chain, a part whose views do not compose with the root's fails the
      // whole chain, which the root then computes on its own, in its own shape: computing the
      // part instead split the chain into one kernel per level (the RoPE gradient over
      // [..., 2, d/2] read by a [..., d] copy: three kernels, not one). A part that does not fit
      // (the caps, a random draw here) is still computed and read as memory.
      if (!force && failed) {
        this.composeFailed = true;
        return null;
      }
      realize(v.storage); // does not fit or compose: compute it, then read it as memory
    }
    const r = toRoot(v);
    if (!r) {
      this.composeFailed = true;
      return null;
    }
    const key = inputKey(r);
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.inputs.length;
      this.inputs.push(r);
      this.index.set(key, i);
      this.storages.set(r.storage, (this.storages.get(r.storage) ?? 0) + 1);
    }
    if (!force && this.storages.size > this.maxStorages) return null;
    return { kind: 'load', input: i, dtype: r.storage.dtype };
  }

  /** The root-space leaf of draw `i` of `p` (its positions through the views), or null. */
  private randomLeaf(p: ElementwiseProgram, i: number, toRoot: (v: View) => View | null): number | null {
    const leaf = p.rng?.[i];
    if (!leaf) throw new Error(`internal: random node ${i} of a program with ${p.rng?.length ?? 0} draws`);
    if (!this.random) return null;
    const r = toRoot({ storage: POSITIONS, shape: p.shape, strides: leaf.strides, offset: leaf.offset });
    if (!r) {
      this.composeFailed = true;
      return null;
    }
    const same = this.rng.findIndex(
      (x) => x.key === leaf.key && x.offset === r.offset && x.strides.every((st, d) => st === r.strides[d]),
    );
    if (same >= 0) return same;
    this.rng.push({ key: leaf.key, strides: r.strides, offset: r.offset });
    return this.rng.length - 1;
  }

  private constant(value: number): number {
    this.consts.push(value);
    return this.consts.length - 1;
  }

  private rollback(mark: {
    inputs: number;
    consts: number;
    rng: number;
    nodes: number;
    inlined: number;
  }): void {
    this.rng.length = mark.rng;
    this.inlined.length = mark.inlined;
    for (const r of this.inputs.splice(mark.inputs)) {
      this.index.delete(inputKey(r));
      const n = (this.storages.get(r.storage) ?? 1) - 1;
      if (n === 0) this.storages.delete(r.storage);
      else this.storages.set(r.storage, n);
    }
    this.consts.length = mark.consts;
    this.nodes = mark.nodes;
  }
}

/** Identifies a root-space input: loads of the same storage, offset and strides share one. */
function inputKey(v: View): string {
  return `${v.storage.id}|${v.offset}|${v.strides.join(',')}`;
}

/** A constant's value as the dtype holds it (float32 rounding, int32 truncation, bool 0/1). */
export function constValue(value: number | boolean, dtype: DType): number {
  const v = Number(value);
  if (dtype === 'float32') return Math.fround(v);
  if (dtype === 'int32') return Math.trunc(v) | 0;
  return v ? 1 : 0;
}
