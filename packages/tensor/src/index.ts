/**
 * @lowrank/tensor — n-dimensional arrays with a kernel registry per backend (CPU in TypeScript,
 * WebGPU in WGSL). Values are read asynchronously so the same code runs on every device.
 */
export { init, type InitOptions, type InitResult } from './init.js';
export { Tensor, type NestedArray } from './tensor.js';
export type { DType, TypedArray } from './dtype.js';
export { DTYPES, promoteTypes } from './dtype.js';
export type { Device, View } from './storage.js';
export { Storage } from './storage.js';
export { OpError } from './errors.js';
export type { Backend, KernelTable, KernelName, UnaryOp, BinaryOp, ReduceOp } from './backend.js';
export {
  tidy,
  keep,
  memory,
  type MemoryInfo,
  type TensorContainer,
  registerBackend,
  registerKernels,
  missingKernels,
  getBackend,
  hasBackend,
  getDefaultDevice,
  setDefaultDevice,
  newStorage,
  setAutogradHooks,
  getAutogradHooks,
  withoutRecording,
  runOp,
  type AutogradHooks,
} from './engine.js';
export { Generator, manualSeed, defaultGenerator } from './random.js';
export type { OpAttrs, OpName, Reduction } from './ops/attrs.js';
export { NON_DIFFERENTIABLE_OPS } from './ops/attrs.js';
export {
  tensor,
  fromTypedArray,
  full,
  zeros,
  ones,
  zerosLike,
  onesLike,
  fullLike,
  arange,
  eye,
  rand,
  uniform,
  randn,
  randint,
  type TensorOptions,
  type RandomOptions,
} from './ops/creation.js';
export {
  add,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  logicalAnd,
  logicalOr,
  logicalNot,
  neg,
  abs,
  exp,
  log,
  sqrt,
  rsqrt,
  tanh,
  sigmoid,
  relu,
  gelu,
  silu,
  sign,
  square,
  reciprocal,
  sin,
  cos,
  floor,
  ceil,
  round,
  clamp,
  where,
  cast,
} from './ops/elementwise.js';
export { sum, mean, prod, max, min, argmax, argmin, variance as var, std, logsumexp, softmax, logSoftmax } from './ops/reduce.js';
export { matmul } from './ops/matmul.js';
export {
  reshape,
  view,
  permute,
  transpose,
  expand,
  slice,
  narrow,
  squeeze,
  unsqueeze,
  flatten,
  contiguous,
  clone,
  detach,
} from './ops/views.js';
export { gather, indexSelect, embedding, scatterAdd, indexAdd, oneHot, triu, tril } from './ops/indexing.js';
export { cat, stack, split, chunk } from './ops/combine.js';
export { KERNEL_NAMES } from './kernel-names.js';

/** Disposes tensors (arrays and objects of tensors are searched). */
export function dispose(...values: unknown[]): void {
  const seen = new Set<unknown>();
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (v instanceof TensorClass) v.dispose();
    else if (Array.isArray(v)) v.forEach(visit);
    else if (Object.getPrototypeOf(v) === Object.prototype) Object.values(v).forEach(visit);
  };
  values.forEach(visit);
}
import { Tensor as TensorClass } from './tensor.js';
