import type { DType } from './dtype.js';
import { getAutogradHooks } from './engine/dispatch.js';
import { realize } from './engine/lazy.js';
import { countTensor, releaseStorage, retainStorage } from './engine/memory.js';
import { TENSOR_BRAND, trackTensor } from './engine/scopes.js';
import { OpError } from './errors.js';
import { contiguousStrides, isContiguous, sizeOf } from './shape.js';
import type { Device, Storage, View } from './storage.js';

/** Values as nested JS arrays, as `toArray()` returns them and `tensor()` accepts them. */
export type NestedArray = number | boolean | NestedArray[];
/** What a binary op accepts next to a tensor: another tensor or a JS number/boolean. */
export type Operand = Tensor | number | boolean;
/** One dim or several (reductions, squeeze). */
export type Dims = number | readonly number[];

let nextId = 0;

/**
 * An n-dimensional array on a device: shape + strides + offset over a shared storage.
 * Values are read asynchronously (`await t.data()`, `await t.toArray()`, `await t.item()`),
 * so the same code works on the CPU and on a GPU.
 */
export class Tensor {
  /** Marks tensors for `tidy` (engine/scopes.ts), which does not import this class. */
  readonly [TENSOR_BRAND] = true as const;
  /** Unique id, in creation order (printed by `toString()` and in error messages). */
  readonly id = nextId++;
  /** Size of each dimension; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Storage elements to skip for one step along each dimension (`[cols, 1]` when contiguous). */
  readonly strides: readonly number[];
  /** Index in the storage of element `[0, 0, …]`. */
  readonly offset: number;
  /** The flat memory this tensor views; shared by every view of it. */
  readonly storage: Storage;
  /** Whether gradients flow to (a leaf) or through (a result) this tensor. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf tensor after `backward()`. */
  grad: Tensor | null = null;
  /** The autograd node that produced this tensor (null for leaves). Owned by the autograd package. */
  gradFn: unknown = null;
  private disposed = false;

  constructor(storage: Storage, shape: readonly number[], strides?: readonly number[], offset = 0) {
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    this.offset = offset;
    retainStorage(storage);
    if (!storage.orphaned) countTensor(storage.device, 1);
    trackTensor(this);
  }

  /** Element type, from the storage. */
  get dtype(): DType {
    return this.storage.dtype;
  }
  /** Device the values live on, from the storage. */
  get device(): Device {
    return this.storage.device;
  }
  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }
  /** Number of dimensions (PyTorch's name; same as `rank`). */
  get ndim(): number {
    return this.shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return sizeOf(this.shape);
  }
  /** Number of elements (PyTorch's name; same as `size`). */
  numel(): number {
    return sizeOf(this.shape);
  }
  /** True once `dispose()` was called; any op on it then throws. */
  get isDisposed(): boolean {
    return this.disposed;
  }
  /** True for tensors not produced by a recorded op (user-created tensors and parameters). */
  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  /** The strided view kernels receive: its storage is computed first if it is lazy. */
  view_(): View {
    realize(this.storage);
    return { storage: this.storage, shape: this.shape, strides: this.strides, offset: this.offset };
  }

  /** The strided view elementwise ops read: a lazy storage stays lazy (engine/lazy.ts). */
  lazyView_(): View {
    return { storage: this.storage, shape: this.shape, strides: this.strides, offset: this.offset };
  }

  /** True when the elements are laid out row-major with no gaps (strides `[…, cols, 1]`). */
  isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }

  /** Throws if this tensor was disposed or its device destroyed, naming the op that tried to use it. */
  assertLive(op: string): void {
    if (this.disposed) throw new OpError(op, `tensor #${this.id} ${fmt(this.shape)} was disposed`);
    if (this.storage.orphaned) {
      throw new OpError(
        op,
        `this tensor belongs to a WebGPU device that was destroyed (tensor #${this.id} ${fmt(this.shape)}; ` +
          'destroyWebGPU() freed its memory: make it again, or read it with data() before destroying)',
      );
    }
  }

  /** Frees this tensor; its storage returns to the backend once no other view uses it. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (!this.storage.orphaned) countTensor(this.storage.device, -1);
    releaseStorage(this.storage);
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    if (this.gradFn !== null) getAutogradHooks()?.onDispose?.(this);
    this.gradFn = null;
  }

  /** A one-line description (id, shape, dtype, device), not the values: reading those is async. */
  toString(): string {
    return `Tensor(#${this.id}, shape=${fmt(this.shape)}, dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- autograd surface (implemented by the autograd package through engine hooks)

  /** Computes gradients of this tensor w.r.t. every leaf that requires grad (accumulated in `.grad`). */
  backward(gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
    const hooks = getAutogradHooks();
    if (!hooks) throw new Error("backward: autograd is not loaded; import 'lowrank' or '@lowrank/autograd'");
    hooks.backward(this, gradient, options);
  }

  /** Marks a leaf tensor as requiring gradients (in place). Returns this. */
  requiresGrad_(flag = true): this {
    this.assertLive('requiresGrad_');
    if (flag && this.dtype !== 'float32') {
      throw new OpError('requiresGrad_', `only float32 tensors can require gradients, got ${this.dtype}`);
    }
    if (!flag && !this.isLeaf) {
      throw new OpError('requiresGrad_', 'cannot turn off requiresGrad of a non-leaf tensor; use detach()');
    }
    this.requiresGrad = flag;
    return this;
  }

  // ---- data access (asynchronous: works the same on every device)

  // ---- elementwise

  // ---- reductions

  // ---- linear algebra

  // ---- views (no copy) and copies

  // ---- indexing

  // ---- in place (for optimizers; refused on tensors that require grad while recording)
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

export function flatShape(args: number[] | [readonly number[]]): readonly number[] {
  const first = args[0];
  return Array.isArray(first) ? (first as readonly number[]) : (args as number[]);
}
