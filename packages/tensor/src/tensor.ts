import type { DType, TypedArray } from './dtype.js';
import {
  countTensor,
  getAutogradHooks,
  releaseStorage,
  retainStorage,
  setTensorClass,
  trackTensor,
} from './engine.js';
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
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
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

  get dtype(): DType {
    return this.storage.dtype;
  }
  get device(): Device {
    return this.storage.device;
  }
  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }
  get ndim(): number {
    return this.shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return sizeOf(this.shape);
  }
  numel(): number {
    return sizeOf(this.shape);
  }
  get isDisposed(): boolean {
    return this.disposed;
  }
  /** True for tensors not produced by a recorded op (user-created tensors and parameters). */
  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  /** The strided view kernels receive. */
  view_(): View {
    return { storage: this.storage, shape: this.shape, strides: this.strides, offset: this.offset };
  }

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
  add(other: Operand): Tensor {
    return ew.add(this, other);
  }
  sub(other: Operand): Tensor {
    return ew.sub(this, other);
  }
  mul(other: Operand): Tensor {
    return ew.mul(this, other);
  }
  div(other: Operand): Tensor {
    return ew.div(this, other);
  }
  pow(other: Operand): Tensor {
    return ew.pow(this, other);
  }
  maximum(other: Operand): Tensor {
    return ew.maximum(this, other);
  }
  minimum(other: Operand): Tensor {
    return ew.minimum(this, other);
  }
  eq(other: Operand): Tensor {
    return ew.eq(this, other);
  }
  ne(other: Operand): Tensor {
    return ew.ne(this, other);
  }
  lt(other: Operand): Tensor {
    return ew.lt(this, other);
  }
  le(other: Operand): Tensor {
    return ew.le(this, other);
  }
  gt(other: Operand): Tensor {
    return ew.gt(this, other);
  }
  ge(other: Operand): Tensor {
    return ew.ge(this, other);
  }
  logicalAnd(other: Operand): Tensor {
    return ew.logicalAnd(this, other);
  }
  logicalOr(other: Operand): Tensor {
    return ew.logicalOr(this, other);
  }
  logicalNot(): Tensor {
    return ew.logicalNot(this);
  }
  neg(): Tensor {
    return ew.neg(this);
  }
  abs(): Tensor {
    return ew.abs(this);
  }
  exp(): Tensor {
    return ew.exp(this);
  }
  log(): Tensor {
    return ew.log(this);
  }
  sqrt(): Tensor {
    return ew.sqrt(this);
  }
  rsqrt(): Tensor {
    return ew.rsqrt(this);
  }
  tanh(): Tensor {
    return ew.tanh(this);
  }
  sigmoid(): Tensor {
    return ew.sigmoid(this);
  }
  relu(): Tensor {
    return ew.relu(this);
  }
  /** GELU; `approximate: 'tanh'` is GPT-2's gelu_new, `'none'` (default) the exact erf form. */
  gelu(options: { approximate?: 'tanh' | 'none' } = {}): Tensor {
    return ew.gelu(this, options);
  }
  silu(): Tensor {
    return ew.silu(this);
  }
  sign(): Tensor {
    return ew.sign(this);
  }
  square(): Tensor {
    return ew.square(this);
  }
  reciprocal(): Tensor {
    return ew.reciprocal(this);
  }
  sin(): Tensor {
    return ew.sin(this);
  }
  cos(): Tensor {
    return ew.cos(this);
  }
  floor(): Tensor {
    return ew.floor(this);
  }
  ceil(): Tensor {
    return ew.ceil(this);
  }
  round(): Tensor {
    return ew.round(this);
  }
  clamp(min: number | null, max?: number | null): Tensor {
    return ew.clamp(this, min, max ?? null);
  }
  /** `cond ? this : other` elementwise, with broadcasting (this tensor's method form of `where`). */
  where(cond: Tensor, other: Operand): Tensor {
    return ew.where(cond, this, other);
  }
  cast(dtype: DType): Tensor {
    return ew.cast(this, dtype);
  }
  float(): Tensor {
    return ew.cast(this, 'float32');
  }
  int(): Tensor {
    return ew.cast(this, 'int32');
  }
  bool(): Tensor {
    return ew.cast(this, 'bool');
  }

  // ---- reductions
  sum(dim?: Dims, keepdim = false): Tensor {
    return red.sum(this, dim, keepdim);
  }
  mean(dim?: Dims, keepdim = false): Tensor {
    return red.mean(this, dim, keepdim);
  }
  prod(dim?: Dims, keepdim = false): Tensor {
    return red.prod(this, dim, keepdim);
  }
  /** Maximum values over `dim` (use `argmax` for the indices). */
  max(dim?: Dims, keepdim = false): Tensor {
    return red.max(this, dim, keepdim);
  }
  min(dim?: Dims, keepdim = false): Tensor {
    return red.min(this, dim, keepdim);
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return red.argmax(this, dim, keepdim);
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return red.argmin(this, dim, keepdim);
  }
  var(dim?: Dims, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return red.variance(this, dim, options);
  }
  std(dim?: Dims, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return red.std(this, dim, options);
  }
  logsumexp(dim?: Dims, keepdim = false): Tensor {
    return red.logsumexp(this, dim, keepdim);
  }
  softmax(dim: number): Tensor {
    return red.softmax(this, dim);
  }
  logSoftmax(dim: number): Tensor {
    return red.logSoftmax(this, dim);
  }

  // ---- linear algebra
  matmul(other: Tensor): Tensor {
    return mm.matmul(this, other);
  }

  // ---- views (no copy) and copies
  reshape(...shape: number[] | [readonly number[]]): Tensor {
    return views.reshape(this, flatShape(shape));
  }
  /** Like reshape, but throws instead of copying when the layout does not allow a view. */
  view(...shape: number[] | [readonly number[]]): Tensor {
    return views.view(this, flatShape(shape));
  }
  permute(...dims: number[] | [readonly number[]]): Tensor {
    return views.permute(this, flatShape(dims));
  }
  transpose(dim0 = -2, dim1 = -1): Tensor {
    return views.transpose(this, dim0, dim1);
  }
  /** Transpose of the last two dims. */
  get T(): Tensor {
    return views.transpose(this, -2, -1);
  }
  expand(...shape: number[] | [readonly number[]]): Tensor {
    return views.expand(this, flatShape(shape));
  }
  broadcastTo(shape: readonly number[]): Tensor {
    return views.expand(this, shape);
  }
  /** Elements start..end (exclusive) by `step` along `dim`; negative indices count from the end. */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return views.slice(this, dim, start, end, step);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return views.narrow(this, dim, start, length);
  }
  squeeze(dim?: Dims): Tensor {
    return views.squeeze(this, dim);
  }
  unsqueeze(dim: number): Tensor {
    return views.unsqueeze(this, dim);
  }
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
  gather(dim: number, index: Tensor): Tensor {
    return idx.gather(this, dim, index);
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return idx.indexSelect(this, dim, index);
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return idx.scatterAdd(this, dim, index, src);
  }
  indexAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return idx.indexAdd(this, dim, index, src);
  }
  triu(diagonal = 0): Tensor {
    return idx.triu(this, diagonal);
  }
  tril(diagonal = 0): Tensor {
    return idx.tril(this, diagonal);
  }
  split(sizeOrSections: number | readonly number[], dim = 0): Tensor[] {
    return combine.split(this, sizeOrSections, dim);
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return combine.chunk(this, chunks, dim);
  }

  // ---- in place (for optimizers; refused on tensors that require grad while recording)
  add_(other: Operand, alpha = 1): this {
    return inplace.add_(this, other, alpha);
  }
  sub_(other: Operand): this {
    return inplace.sub_(this, other);
  }
  mul_(other: Operand): this {
    return inplace.mul_(this, other);
  }
  div_(other: Operand): this {
    return inplace.div_(this, other);
  }
  copy_(src: Tensor): this {
    return inplace.copy_(this, src);
  }
  fill_(value: number): this {
    return inplace.fill_(this, value);
  }
  zero_(): this {
    this.assertLive('zero_');
    return inplace.fill_(this, 0);
  }
}

setTensorClass(Tensor);

function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function flatShape(args: number[] | [readonly number[]]): readonly number[] {
  const first = args[0];
  return Array.isArray(first) ? (first as readonly number[]) : (args as number[]);
}
