import type { DType, TypedArray } from './dtype.js';
import { getAutogradHooks } from './engine/dispatch.js';
import { realize } from './engine/lazy.js';
import { countTensor, releaseStorage, retainStorage } from './engine/memory.js';
import { TENSOR_BRAND, trackTensor } from './engine/scopes.js';
import { OpError } from './errors.js';
import * as combine from './ops/combine.js';
import * as data from './ops/data.js';
import * as ew from './ops/elementwise.js';
import * as idx from './ops/indexing.js';
import * as inplace from './ops/inplace.js';
import * as mm from './ops/matmul.js';
import * as red from './ops/reduce.js';
import * as views from './ops/views.js';
import { contiguousStrides, isContiguous, sizeOf } from './shape.js';
import type { Device, Storage, View } from './storage.js';

/** Values as nested JS arrays, as `toArray()` returns them and `tensor()` accepts them. */
export type NestedArray = number | boolean | NestedArray[];
type Operand = Tensor | number | boolean;
type Dims = number | readonly number[];

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
    countTensor(storage.device, 1);
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

  /** Throws if this tensor was disposed, naming the op that tried to use it. */
  assertLive(op: string): void {
    if (this.disposed) throw new OpError(op, `tensor #${this.id} ${fmt(this.shape)} was disposed`);
  }

  /** Frees this tensor; its storage returns to the backend once no other view uses it. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    countTensor(this.storage.device, -1);
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

  /** A tensor sharing this one's storage, cut from the graph. */
  detach(): Tensor {
    return views.detach(this);
  }

  // ---- data access (asynchronous: works the same on every device)

  /** A copy of the values as a typed array, in row-major order. */
  data(): Promise<TypedArray> {
    return data.readData(this);
  }
  /** The values as nested JS arrays (booleans for bool tensors). */
  toArray(): Promise<NestedArray> {
    return data.toArray(this);
  }
  /** The single value of a one-element tensor. */
  item(): Promise<number | boolean> {
    return data.item(this);
  }
  /** A copy on another device (resolves to this tensor when already there). */
  to(device: Device): Promise<Tensor> {
    return data.toDevice(this, device);
  }

  // ---- elementwise
  /** `this + other`, broadcasting. */
  add(other: Operand): Tensor {
    return ew.add(this, other);
  }
  /** `this - other`, broadcasting. */
  sub(other: Operand): Tensor {
    return ew.sub(this, other);
  }
  /** `this * other` elementwise, broadcasting. */
  mul(other: Operand): Tensor {
    return ew.mul(this, other);
  }
  /** `this / other` elementwise, broadcasting. */
  div(other: Operand): Tensor {
    return ew.div(this, other);
  }
  /** `this ** other` elementwise, broadcasting. */
  pow(other: Operand): Tensor {
    return ew.pow(this, other);
  }
  /** Elementwise maximum (NaN propagates), broadcasting. */
  maximum(other: Operand): Tensor {
    return ew.maximum(this, other);
  }
  /** Elementwise minimum (NaN propagates), broadcasting. */
  minimum(other: Operand): Tensor {
    return ew.minimum(this, other);
  }
  /** `this == other` as a bool tensor, broadcasting. */
  eq(other: Operand): Tensor {
    return ew.eq(this, other);
  }
  /** `this != other` as a bool tensor, broadcasting. */
  ne(other: Operand): Tensor {
    return ew.ne(this, other);
  }
  /** `this < other` as a bool tensor, broadcasting. */
  lt(other: Operand): Tensor {
    return ew.lt(this, other);
  }
  /** `this <= other` as a bool tensor, broadcasting. */
  le(other: Operand): Tensor {
    return ew.le(this, other);
  }
  /** `this > other` as a bool tensor, broadcasting. */
  gt(other: Operand): Tensor {
    return ew.gt(this, other);
  }
  /** `this >= other` as a bool tensor, broadcasting. */
  ge(other: Operand): Tensor {
    return ew.ge(this, other);
  }
  /** Elementwise AND of truthiness, as a bool tensor. */
  logicalAnd(other: Operand): Tensor {
    return ew.logicalAnd(this, other);
  }
  /** Elementwise OR of truthiness, as a bool tensor. */
  logicalOr(other: Operand): Tensor {
    return ew.logicalOr(this, other);
  }
  /** Elementwise NOT of truthiness, as a bool tensor. */
  logicalNot(): Tensor {
    return ew.logicalNot(this);
  }
  /** `-this`. */
  neg(): Tensor {
    return ew.neg(this);
  }
  /** `|this|`. */
  abs(): Tensor {
    return ew.abs(this);
  }
  /** `e ** this`. */
  exp(): Tensor {
    return ew.exp(this);
  }
  /** Natural logarithm. */
  log(): Tensor {
    return ew.log(this);
  }
  /** Square root. */
  sqrt(): Tensor {
    return ew.sqrt(this);
  }
  /** `1 / sqrt(this)`. */
  rsqrt(): Tensor {
    return ew.rsqrt(this);
  }
  /** Hyperbolic tangent. */
  tanh(): Tensor {
    return ew.tanh(this);
  }
  /** Logistic sigmoid `1 / (1 + e ** -this)`. */
  sigmoid(): Tensor {
    return ew.sigmoid(this);
  }
  /** `max(this, 0)` (NaN propagates). */
  relu(): Tensor {
    return ew.relu(this);
  }
  /** GELU; `approximate: 'tanh'` is GPT-2's gelu_new, `'none'` (default) the exact erf form. */
  gelu(options: { approximate?: 'tanh' | 'none' } = {}): Tensor {
    return ew.gelu(this, options);
  }
  /** SiLU (swish): `this * sigmoid(this)`. */
  silu(): Tensor {
    return ew.silu(this);
  }
  /** -1, 0 or 1 by sign. */
  sign(): Tensor {
    return ew.sign(this);
  }
  /** `this * this`. */
  square(): Tensor {
    return ew.square(this);
  }
  /** `1 / this`. */
  reciprocal(): Tensor {
    return ew.reciprocal(this);
  }
  /** Sine (radians). */
  sin(): Tensor {
    return ew.sin(this);
  }
  /** Cosine (radians). */
  cos(): Tensor {
    return ew.cos(this);
  }
  /** Rounds down. */
  floor(): Tensor {
    return ew.floor(this);
  }
  /** Rounds up. */
  ceil(): Tensor {
    return ew.ceil(this);
  }
  /** Rounds to the nearest integer, halves to even (as PyTorch). */
  round(): Tensor {
    return ew.round(this);
  }
  /** Clamps into `[min, max]`; `null` leaves that side open. */
  clamp(min: number | null, max?: number | null): Tensor {
    return ew.clamp(this, min, max ?? null);
  }
  /** `cond ? this : other` elementwise, with broadcasting (this tensor's method form of `where`). */
  where(cond: Tensor, other: Operand): Tensor {
    return ew.where(cond, this, other);
  }
  /** A copy with another dtype (the tensor itself when it already has it). */
  cast(dtype: DType): Tensor {
    return ew.cast(this, dtype);
  }
  /** `cast('float32')`. */
  float(): Tensor {
    return ew.cast(this, 'float32');
  }
  /** `cast('int32')`. */
  int(): Tensor {
    return ew.cast(this, 'int32');
  }
  /** `cast('bool')`. */
  bool(): Tensor {
    return ew.cast(this, 'bool');
  }

  // ---- reductions
  /** Sum over `dim` (every dim when omitted); `keepdim` keeps reduced dims as size 1. */
  sum(dim?: Dims, keepdim = false): Tensor {
    return red.sum(this, dim, keepdim);
  }
  /** Mean over `dim` (every dim when omitted). */
  mean(dim?: Dims, keepdim = false): Tensor {
    return red.mean(this, dim, keepdim);
  }
  /** Product over `dim` (every dim when omitted). */
  prod(dim?: Dims, keepdim = false): Tensor {
    return red.prod(this, dim, keepdim);
  }
  /** Maximum values over `dim` (use `argmax` for the indices). */
  max(dim?: Dims, keepdim = false): Tensor {
    return red.max(this, dim, keepdim);
  }
  /** Minimum values over `dim` (use `argmin` for the indices). */
  min(dim?: Dims, keepdim = false): Tensor {
    return red.min(this, dim, keepdim);
  }
  /** Index (int32) of the largest value along `dim` (of the flattened tensor when omitted). */
  argmax(dim?: number, keepdim = false): Tensor {
    return red.argmax(this, dim, keepdim);
  }
  /** Index (int32) of the smallest value along `dim` (of the flattened tensor when omitted). */
  argmin(dim?: number, keepdim = false): Tensor {
    return red.argmin(this, dim, keepdim);
  }
  /** Variance over `dim`; `unbiased` (default true) divides by n - 1. */
  var(dim?: Dims, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return red.variance(this, dim, options);
  }
  /** Standard deviation over `dim`; `unbiased` (default true) divides by n - 1. */
  std(dim?: Dims, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return red.std(this, dim, options);
  }
  /** `log(sum(exp(this)))` over `dim`, computed stably. */
  logsumexp(dim?: Dims, keepdim = false): Tensor {
    return red.logsumexp(this, dim, keepdim);
  }
  /** Softmax along `dim` (stable: the max is subtracted first). */
  softmax(dim: number): Tensor {
    return red.softmax(this, dim);
  }
  /** `log(softmax(this, dim))`, computed stably. */
  logSoftmax(dim: number): Tensor {
    return red.logSoftmax(this, dim);
  }

  // ---- linear algebra
  /** Matrix product with NumPy semantics: 1-D operands are promoted, batch dims broadcast. */
  matmul(other: Tensor): Tensor {
    return mm.matmul(this, other);
  }

  // ---- views (no copy) and copies
  /** Same elements in a new shape (one dim may be -1); a view when the strides allow it, else a copy. */
  reshape(...shape: number[] | [readonly number[]]): Tensor {
    return views.reshape(this, flatShape(shape));
  }
  /** Like reshape, but throws instead of copying when the layout does not allow a view. */
  view(...shape: number[] | [readonly number[]]): Tensor {
    return views.view(this, flatShape(shape));
  }
  /** A view with the dims reordered. */
  permute(...dims: number[] | [readonly number[]]): Tensor {
    return views.permute(this, flatShape(dims));
  }
  /** A view with two dims swapped (the last two by default). */
  transpose(dim0 = -2, dim1 = -1): Tensor {
    return views.transpose(this, dim0, dim1);
  }
  /** Transpose of the last two dims. */
  get T(): Tensor {
    return views.transpose(this, -2, -1);
  }
  /** A view repeating size-1 dims to `shape` at no cost (stride 0); -1 keeps a dim. */
  expand(...shape: number[] | [readonly number[]]): Tensor {
    return views.expand(this, flatShape(shape));
  }
  /** A view broadcast to `shape` (NumPy rules), like `expand`. */
  broadcastTo(shape: readonly number[]): Tensor {
    return views.expand(this, shape);
  }
  /** Elements start..end (exclusive) by `step` along `dim`; negative indices count from the end. */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return views.slice(this, dim, start, end, step);
  }
  /** A view of `length` elements from `start` along `dim`. */
  narrow(dim: number, start: number, length: number): Tensor {
    return views.narrow(this, dim, start, length);
  }
  /** A view without size-1 dims (only `dim` when given). */
  squeeze(dim?: Dims): Tensor {
    return views.squeeze(this, dim);
  }
  /** A view with a size-1 dim inserted at `dim`. */
  unsqueeze(dim: number): Tensor {
    return views.unsqueeze(this, dim);
  }
  /** Dims `startDim..endDim` merged into one (a view when possible). */
  flatten(startDim = 0, endDim = -1): Tensor {
    return views.flatten(this, startDim, endDim);
  }
  /** This tensor when already contiguous, otherwise a contiguous copy. */
  contiguous(): Tensor {
    return views.contiguous(this);
  }
  /** A contiguous copy (never shares storage). */
  clone(): Tensor {
    return views.clone(this);
  }

  // ---- indexing
  /** `out[i][j] = this[index[i][j]][j]` along `dim` (PyTorch's gather). */
  gather(dim: number, index: Tensor): Tensor {
    return idx.gather(this, dim, index);
  }
  /** The slices at `index` (1-D, int32) along `dim`. */
  indexSelect(dim: number, index: Tensor): Tensor {
    return idx.indexSelect(this, dim, index);
  }
  /** A copy with `src` added at `index` along `dim` (PyTorch's scatter_add). */
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return idx.scatterAdd(this, dim, index, src);
  }
  /** A copy with the slices of `src` added at `index` (1-D) along `dim`. */
  indexAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return idx.indexAdd(this, dim, index, src);
  }
  /** Upper triangle of the last two dims (from `diagonal`), zeros elsewhere. */
  triu(diagonal = 0): Tensor {
    return idx.triu(this, diagonal);
  }
  /** Lower triangle of the last two dims (up to `diagonal`), zeros elsewhere. */
  tril(diagonal = 0): Tensor {
    return idx.tril(this, diagonal);
  }
  /** Pieces of `sizeOrSections` elements each (or of the listed sizes) along `dim`, as views. */
  split(sizeOrSections: number | readonly number[], dim = 0): Tensor[] {
    return combine.split(this, sizeOrSections, dim);
  }
  /** `chunks` nearly equal pieces along `dim`, as views. */
  chunk(chunks: number, dim = 0): Tensor[] {
    return combine.chunk(this, chunks, dim);
  }

  // ---- in place (for optimizers; refused on tensors that require grad while recording)
  /** In place: `this += alpha * other`. Returns this. */
  add_(other: Operand, alpha = 1): this {
    return inplace.add_(this, other, alpha);
  }
  /** In place: `this -= other`. Returns this. */
  sub_(other: Operand): this {
    return inplace.sub_(this, other);
  }
  /** In place: `this *= other`. Returns this. */
  mul_(other: Operand): this {
    return inplace.mul_(this, other);
  }
  /** In place: `this /= other`. Returns this. */
  div_(other: Operand): this {
    return inplace.div_(this, other);
  }
  /** In place: copies `src` (broadcast to this shape) into this tensor. Returns this. */
  copy_(src: Tensor): this {
    return inplace.copy_(this, src);
  }
  /** In place: sets every element to `value`. Returns this. */
  fill_(value: number): this {
    return inplace.fill_(this, value);
  }
  /** In place: sets every element to 0. Returns this. */
  zero_(): this {
    this.assertLive('zero_');
    return inplace.fill_(this, 0);
  }
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function flatShape(args: number[] | [readonly number[]]): readonly number[] {
  const first = args[0];
  return Array.isArray(first) ? (first as readonly number[]) : (args as number[]);
}
