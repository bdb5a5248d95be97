/**
 * The op methods of Tensor (`x.add(y)`, `x.sum()`, …), attached to its prototype here rather than
 * written in tensor.ts: the ops create tensors, so the class cannot import them without an import
 * circle. Each method calls the op function of the same name in ops/.
 */
import type { DType, TypedArray } from './dtype.js';
import * as combine from './ops/combine.js';
import * as data from './ops/data.js';
import * as ew from './ops/elementwise.js';
import * as idx from './ops/indexing.js';
import * as inplace from './ops/inplace.js';
import * as mm from './ops/matmul.js';
import * as red from './ops/reduce.js';
import * as views from './ops/views.js';
import type { Device } from './storage.js';
import { type Dims, flatShape, type NestedArray, type Operand, Tensor } from './tensor.js';

declare module './tensor.js' {
  interface Tensor {
    /** A tensor sharing this one's storage, cut from the graph. */
    detach(): Tensor;
    /** A copy of the values as a typed array, in row-major order. */
    data(): Promise<TypedArray>;
    /** The values as nested JS arrays (booleans for bool tensors). */
    toArray(): Promise<NestedArray>;
    /** The single value of a one-element tensor. */
    item(): Promise<number | boolean>;
    /** A copy on another device (resolves to this tensor when already there). */
    to(device: Device): Promise<Tensor>;
    /** `this + other`, broadcasting. */
    add(other: Operand): Tensor;
    /** `this - other`, broadcasting. */
    sub(other: Operand): Tensor;
    /** `this * other` elementwise, broadcasting. */
    mul(other: Operand): Tensor;
    /** `this / other` elementwise, broadcasting. */
    div(other: Operand): Tensor;
    /** `this ** other` elementwise, broadcasting. */
    pow(other: Operand): Tensor;
    /** Elementwise maximum (NaN propagates), broadcasting. */
    maximum(other: Operand): Tensor;
    /** Elementwise minimum (NaN propagates), broadcasting. */
    minimum(other: Operand): Tensor;
    /** `this == other` as a bool tensor, broadcasting. */
    eq(other: Operand): Tensor;
    /** `this != other` as a bool tensor, broadcasting. */
    ne(other: Operand): Tensor;
    /** `this < other` as a bool tensor, broadcasting. */
    lt(other: Operand): Tensor;
    /** `this <= other` as a bool tensor, broadcasting. */
    le(other: Operand): Tensor;
    /** `this > other` as a bool tensor, broadcasting. */
    gt(other: Operand): Tensor;
    /** `this >= other` as a bool tensor, broadcasting. */
    ge(other: Operand): Tensor;
    /** Elementwise AND of truthiness, as a bool tensor. */
    logicalAnd(other: Operand): Tensor;
    /** Elementwise OR of truthiness, as a bool tensor. */
    logicalOr(other: Operand): Tensor;
    /** Elementwise NOT of truthiness, as a bool tensor. */
    logicalNot(): Tensor;
    /** `-this`. */
    neg(): Tensor;
    /** `|this|`. */
    abs(): Tensor;
    /** `e ** this`. */
    exp(): Tensor;
    /** Natural logarithm. */
    log(): Tensor;
    /** Square root. */
    sqrt(): Tensor;
    /** `1 / sqrt(this)`. */
    rsqrt(): Tensor;
    /** Hyperbolic tangent. */
    tanh(): Tensor;
    /** Logistic sigmoid `1 / (1 + e ** -this)`. */
    sigmoid(): Tensor;
    /** `max(this, 0)` (NaN propagates). */
    relu(): Tensor;
    /** GELU; `approximate: 'tanh'` is GPT-2's gelu_new, `'none'` (default) the exact erf form. */
    gelu(options?: { approximate?: 'tanh' | 'none' }): Tensor;
    /** SiLU (swish): `this * sigmoid(this)`. */
    silu(): Tensor;
    /** -1, 0 or 1 by sign. */
    sign(): Tensor;
    /** `this * this`. */
    square(): Tensor;
    /** `1 / this`. */
    reciprocal(): Tensor;
    /** Sine (radians). */
    sin(): Tensor;
    /** Cosine (radians). */
    cos(): Tensor;
    /** Rounds down. */
    floor(): Tensor;
    /** Rounds up. */
    ceil(): Tensor;
    /** Rounds to the nearest integer, halves to even (as PyTorch). */
    round(): Tensor;
    /** Clamps into `[min, max]`; `null` leaves that side open. */
    clamp(min: number | null, max?: number | null): Tensor;
    /** `cond ? this : other` elementwise, with broadcasting (this tensor's method form of `where`). */
    where(cond: Tensor, other: Operand): Tensor;
    /** A copy with another dtype (the tensor itself when it already has it). */
    cast(dtype: DType): Tensor;
    /** `cast('float32')`. */
    float(): Tensor;
    /** `cast('int32')`. */
    int(): Tensor;
    /** `cast('bool')`. */
    bool(): Tensor;
    /** Sum over `dim` (every dim when omitted); `keepdim` keeps reduced dims as size 1. */
    sum(dim?: Dims, keepdim?: boolean): Tensor;
    /** Mean over `dim` (every dim when omitted). */
    mean(dim?: Dims, keepdim?: boolean): Tensor;
    /** Product over `dim` (every dim when omitted). */
    prod(dim?: Dims, keepdim?: boolean): Tensor;
    /** Maximum values over `dim` (use `argmax` for the indices). */
    max(dim?: Dims, keepdim?: boolean): Tensor;
    /** Minimum values over `dim` (use `argmin` for the indices). */
    min(dim?: Dims, keepdim?: boolean): Tensor;
    /** Index (int32) of the largest value along `dim` (of the flattened tensor when omitted). */
    argmax(dim?: number, keepdim?: boolean): Tensor;
    /** Index (int32) of the smallest value along `dim` (of the flattened tensor when omitted). */
    argmin(dim?: number, keepdim?: boolean): Tensor;
    /** Variance over `dim`; `unbiased` (default true) divides by n - 1. */
    var(dim?: Dims, options?: { unbiased?: boolean; keepdim?: boolean }): Tensor;
    /** Standard deviation over `dim`; `unbiased` (default true) divides by n - 1. */
    std(dim?: Dims, options?: { unbiased?: boolean; keepdim?: boolean }): Tensor;
    /** `log(sum(exp(this)))` over `dim`, computed stably. */
    logsumexp(dim?: Dims, keepdim?: boolean): Tensor;
    /** Softmax along `dim` (stable: the max is subtracted first). */
    softmax(dim: number): Tensor;
    /** `log(softmax(this, dim))`, computed stably. */
    logSoftmax(dim: number): Tensor;
    /** Matrix product with NumPy semantics: 1-D operands are promoted, batch dims broadcast. */
    matmul(other: Tensor): Tensor;
    /** Same elements in a new shape (one dim may be -1); a view when the strides allow it, else a copy. */
    reshape(...shape: number[] | [readonly number[]]): Tensor;
    /** Like reshape, but throws instead of copying when the layout does not allow a view. */
    view(...shape: number[] | [readonly number[]]): Tensor;
    /** A view with the dims reordered. */
    permute(...dims: number[] | [readonly number[]]): Tensor;
    /** A view with two dims swapped (the last two by default). */
    transpose(dim0?: number, dim1?: number): Tensor;
    /** Transpose of the last two dims. */
    readonly T: Tensor;
    /** A view repeating size-1 dims to `shape` at no cost (stride 0); -1 keeps a dim. */
    expand(...shape: number[] | [readonly number[]]): Tensor;
    /** A view broadcast to `shape` (NumPy rules), like `expand`. */
    broadcastTo(shape: readonly number[]): Tensor;
    /** Elements start..end (exclusive) by `step` along `dim`; negative indices count from the end. */
    slice(dim: number, start?: number, end?: number, step?: number): Tensor;
    /** A view of `length` elements from `start` along `dim`. */
    narrow(dim: number, start: number, length: number): Tensor;
    /** A view without size-1 dims (only `dim` when given). */
    squeeze(dim?: Dims): Tensor;
    /** A view with a size-1 dim inserted at `dim`. */
    unsqueeze(dim: number): Tensor;
    /** Dims `startDim..endDim` merged into one (a view when possible). */
    flatten(startDim?: number, endDim?: number): Tensor;
    /** This tensor when already contiguous, otherwise a contiguous copy. */
    contiguous(): Tensor;
    /** A contiguous copy (never shares storage). */
    clone(): Tensor;
    /** `out[i][j] = this[index[i][j]][j]` along `dim` (PyTorch's gather). */
    gather(dim: number, index: Tensor): Tensor;
    /** The slices at `index` (1-D, int32) along `dim`. */
    indexSelect(dim: number, index: Tensor): Tensor;
    /** A copy with `src` added at `index` along `dim` (PyTorch's scatter_add). */
    scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor;
    /** A copy with the slices of `src` added at `index` (1-D) along `dim`. */
    indexAdd(dim: number, index: Tensor, src: Tensor): Tensor;
    /** Upper triangle of the last two dims (from `diagonal`), zeros elsewhere. */
    triu(diagonal?: number): Tensor;
    /** Lower triangle of the last two dims (up to `diagonal`), zeros elsewhere. */
    tril(diagonal?: number): Tensor;
    /** Pieces of `sizeOrSections` elements each (or of the listed sizes) along `dim`, as views. */
    split(sizeOrSections: number | readonly number[], dim?: number): Tensor[];
    /** `chunks` nearly equal pieces along `dim`, as views. */
    chunk(chunks: number, dim?: number): Tensor[];
    /** In place: `this += alpha * other`. Returns this. */
    add_(other: Operand, alpha?: number): this;
    /** In place: `this -= other`. Returns this. */
    sub_(other: Operand): this;
    /** In place: `this *= other`. Returns this. */
    mul_(other: Operand): this;
    /** In place: `this /= other`. Returns this. */
    div_(other: Operand): this;
    /** In place: copies `src` (broadcast to this shape) into this tensor. Returns this. */
    copy_(src: Tensor): this;
    /** In place: sets every element to `value`. Returns this. */
    fill_(value: number): this;
    /** In place: sets every element to 0. Returns this. */
    zero_(): this;
  }
}

Tensor.prototype.detach = function (this: Tensor): Tensor {
  return views.detach(this);
};

Tensor.prototype.data = function (this: Tensor): Promise<TypedArray> {
  return data.readData(this);
};

Tensor.prototype.toArray = function (this: Tensor): Promise<NestedArray> {
  return data.toArray(this);
};

Tensor.prototype.item = function (this: Tensor): Promise<number | boolean> {
  return data.item(this);
};

Tensor.prototype.to = function (this: Tensor, device: Device): Promise<Tensor> {
  return data.toDevice(this, device);
};

Tensor.prototype.add = function (this: Tensor, other: Operand): Tensor {
  return ew.add(this, other);
};

Tensor.prototype.sub = function (this: Tensor, other: Operand): Tensor {
  return ew.sub(this, other);
};

Tensor.prototype.mul = function (this: Tensor, other: Operand): Tensor {
  return ew.mul(this, other);
};

Tensor.prototype.div = function (this: Tensor, other: Operand): Tensor {
  return ew.div(this, other);
};

Tensor.prototype.pow = function (this: Tensor, other: Operand): Tensor {
  return ew.pow(this, other);
};

Tensor.prototype.maximum = function (this: Tensor, other: Operand): Tensor {
  return ew.maximum(this, other);
};

Tensor.prototype.minimum = function (this: Tensor, other: Operand): Tensor {
  return ew.minimum(this, other);
};

Tensor.prototype.eq = function (this: Tensor, other: Operand): Tensor {
  return ew.eq(this, other);
};

Tensor.prototype.ne = function (this: Tensor, other: Operand): Tensor {
  return ew.ne(this, other);
};

Tensor.prototype.lt = function (this: Tensor, other: Operand): Tensor {
  return ew.lt(this, other);
};

Tensor.prototype.le = function (this: Tensor, other: Operand): Tensor {
  return ew.le(this, other);
};

Tensor.prototype.gt = function (this: Tensor, other: Operand): Tensor {
  return ew.gt(this, other);
};

Tensor.prototype.ge = function (this: Tensor, other: Operand): Tensor {
  return ew.ge(this, other);
};

Tensor.prototype.logicalAnd = function (this: Tensor, other: Operand): Tensor {
  return ew.logicalAnd(this, other);
};

Tensor.prototype.logicalOr = function (this: Tensor, other: Operand): Tensor {
  return ew.logicalOr(this, other);
};

Tensor.prototype.logicalNot = function (this: Tensor): Tensor {
  return ew.logicalNot(this);
};

Tensor.prototype.neg = function (this: Tensor): Tensor {
  return ew.neg(this);
};

Tensor.prototype.abs = function (this: Tensor): Tensor {
  return ew.abs(this);
};

Tensor.prototype.exp = function (this: Tensor): Tensor {
  return ew.exp(this);
};

Tensor.prototype.log = function (this: Tensor): Tensor {
  return ew.log(this);
};

Tensor.prototype.sqrt = function (this: Tensor): Tensor {
  return ew.sqrt(this);
};

Tensor.prototype.rsqrt = function (this: Tensor): Tensor {
  return ew.rsqrt(this);
};

Tensor.prototype.tanh = function (this: Tensor): Tensor {
  return ew.tanh(this);
};

Tensor.prototype.sigmoid = function (this: Tensor): Tensor {
  return ew.sigmoid(this);
};

Tensor.prototype.relu = function (this: Tensor): Tensor {
  return ew.relu(this);
};

Tensor.prototype.gelu = function (this: Tensor, options: { approximate?: 'tanh' | 'none' } = {}): Tensor {
  return ew.gelu(this, options);
};

Tensor.prototype.silu = function (this: Tensor): Tensor {
  return ew.silu(this);
};

Tensor.prototype.sign = function (this: Tensor): Tensor {
  return ew.sign(this);
};

Tensor.prototype.square = function (this: Tensor): Tensor {
  return ew.square(this);
};

Tensor.prototype.reciprocal = function (this: Tensor): Tensor {
  return ew.reciprocal(this);
};

Tensor.prototype.sin = function (this: Tensor): Tensor {
  return ew.sin(this);
};

Tensor.prototype.cos = function (this: Tensor): Tensor {
  return ew.cos(this);
};

Tensor.prototype.floor = function (this: Tensor): Tensor {
  return ew.floor(this);
};

Tensor.prototype.ceil = function (this: Tensor): Tensor {
  return ew.ceil(this);
};

Tensor.prototype.round = function (this: Tensor): Tensor {
  return ew.round(this);
};

Tensor.prototype.clamp = function (this: Tensor, min: number | null, max?: number | null): Tensor {
  return ew.clamp(this, min, max ?? null);
};

Tensor.prototype.where = function (this: Tensor, cond: Tensor, other: Operand): Tensor {
  return ew.where(cond, this, other);
};

Tensor.prototype.cast = function (this: Tensor, dtype: DType): Tensor {
  return ew.cast(this, dtype);
};

Tensor.prototype.float = function (this: Tensor): Tensor {
  return ew.cast(this, 'float32');
};

Tensor.prototype.int = function (this: Tensor): Tensor {
  return ew.cast(this, 'int32');
};

Tensor.prototype.bool = function (this: Tensor): Tensor {
  return ew.cast(this, 'bool');
};

Tensor.prototype.sum = function (this: Tensor, dim?: Dims, keepdim = false): Tensor {
  return red.sum(this, dim, keepdim);
};

Tensor.prototype.mean = function (this: Tensor, dim?: Dims, keepdim = false): Tensor {
  return red.mean(this, dim, keepdim);
};

Tensor.prototype.prod = function (this: Tensor, dim?: Dims, keepdim = false): Tensor {
  return red.prod(this, dim, keepdim);
};

Tensor.prototype.max = function (this: Tensor, dim?: Dims, keepdim = false): Tensor {
  return red.max(this, dim, keepdim);
};

Tensor.prototype.min = function (this: Tensor, dim?: Dims, keepdim = false): Tensor {
  return red.min(this, dim, keepdim);
};

Tensor.prototype.argmax = function (this: Tensor, dim?: number, keepdim = false): Tensor {
  return red.argmax(this, dim, keepdim);
};

Tensor.prototype.argmin = function (this: Tensor, dim?: number, keepdim = false): Tensor {
  return red.argmin(this, dim, keepdim);
};

Tensor.prototype.var = function (
  this: Tensor,
  dim?: Dims,
  options: { unbiased?: boolean; keepdim?: boolean } = {},
): Tensor {
  return red.variance(this, dim, options);
};

Tensor.prototype.std = function (
  this: Tensor,
  dim?: Dims,
  options: { unbiased?: boolean; keepdim?: boolean } = {},
): Tensor {
  return red.std(this, dim, options);
};

Tensor.prototype.logsumexp = function (this: Tensor, dim?: Dims, keepdim = false): Tensor {
  return red.logsumexp(this, dim, keepdim);
};

Tensor.prototype.softmax = function (this: Tensor, dim: number): Tensor {
  return red.softmax(this, dim);
};

Tensor.prototype.logSoftmax = function (this: Tensor, dim: number): Tensor {
  return red.logSoftmax(this, dim);
};

Tensor.prototype.matmul = function (this: Tensor, other: Tensor): Tensor {
  return mm.matmul(this, other);
};

Tensor.prototype.reshape = function (this: Tensor, ...shape: number[] | [readonly number[]]): Tensor {
  return views.reshape(this, flatShape(shape));
};

Tensor.prototype.view = function (this: Tensor, ...shape: number[] | [readonly number[]]): Tensor {
  return views.view(this, flatShape(shape));
};

Tensor.prototype.permute = function (this: Tensor, ...dims: number[] | [readonly number[]]): Tensor {
  return views.permute(this, flatShape(dims));
};

Tensor.prototype.transpose = function (this: Tensor, dim0 = -2, dim1 = -1): Tensor {
  return views.transpose(this, dim0, dim1);
};

Object.defineProperty(Tensor.prototype, 'T', {
  get(this: Tensor): Tensor {
    return views.transpose(this, -2, -1);
  },
});

Tensor.prototype.expand = function (this: Tensor, ...shape: number[] | [readonly number[]]): Tensor {
  return views.expand(this, flatShape(shape));
};

Tensor.prototype.broadcastTo = function (this: Tensor, shape: readonly number[]): Tensor {
  return views.expand(this, shape);
};

Tensor.prototype.slice = function (
  this: Tensor,
  dim: number,
  start?: number,
  end?: number,
  step = 1,
): Tensor {
  return views.slice(this, dim, start, end, step);
};

Tensor.prototype.narrow = function (this: Tensor, dim: number, start: number, length: number): Tensor {
  return views.narrow(this, dim, start, length);
};

Tensor.prototype.squeeze = function (this: Tensor, dim?: Dims): Tensor {
  return views.squeeze(this, dim);
};

Tensor.prototype.unsqueeze = function (this: Tensor, dim: number): Tensor {
  return views.unsqueeze(this, dim);
};

Tensor.prototype.flatten = function (this: Tensor, startDim = 0, endDim = -1): Tensor {
  return views.flatten(this, startDim, endDim);
};

Tensor.prototype.contiguous = function (this: Tensor): Tensor {
  return views.contiguous(this);
};

Tensor.prototype.clone = function (this: Tensor): Tensor {
  return views.clone(this);
};

Tensor.prototype.gather = function (this: Tensor, dim: number, index: Tensor): Tensor {
  return idx.gather(this, dim, index);
};

Tensor.prototype.indexSelect = function (this: Tensor, dim: number, index: Tensor): Tensor {
  return idx.indexSelect(this, dim, index);
};

Tensor.prototype.scatterAdd = function (this: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  return idx.scatterAdd(this, dim, index, src);
};

Tensor.prototype.indexAdd = function (this: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  return idx.indexAdd(this, dim, index, src);
};

Tensor.prototype.triu = function (this: Tensor, diagonal = 0): Tensor {
  return idx.triu(this, diagonal);
};

Tensor.prototype.tril = function (this: Tensor, diagonal = 0): Tensor {
  return idx.tril(this, diagonal);
};

Tensor.prototype.split = function (
  this: Tensor,
  sizeOrSections: number | readonly number[],
  dim = 0,
): Tensor[] {
  return combine.split(this, sizeOrSections, dim);
};

Tensor.prototype.chunk = function (this: Tensor, chunks: number, dim = 0): Tensor[] {
  return combine.chunk(this, chunks, dim);
};

Tensor.prototype.add_ = function <T extends Tensor>(this: T, other: Operand, alpha = 1): T {
  return inplace.add_(this, other, alpha);
};

Tensor.prototype.sub_ = function <T extends Tensor>(this: T, other: Operand): T {
  return inplace.sub_(this, other);
};

Tensor.prototype.mul_ = function <T extends Tensor>(this: T, other: Operand): T {
  return inplace.mul_(this, other);
};

Tensor.prototype.div_ = function <T extends Tensor>(this: T, other: Operand): T {
  return inplace.div_(this, other);
};

Tensor.prototype.copy_ = function <T extends Tensor>(this: T, src: Tensor): T {
  return inplace.copy_(this, src);
};

Tensor.prototype.fill_ = function <T extends Tensor>(this: T, value: number): T {
  return inplace.fill_(this, value);
};

Tensor.prototype.zero_ = function <T extends Tensor>(this: T): T {
  this.assertLive('zero_');
  return inplace.fill_(this, 0);
};
