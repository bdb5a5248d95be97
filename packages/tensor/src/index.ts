/**
 * @lowrank/tensor — n-dimensional arrays with a kernel registry per backend (CPU in TypeScript,
 * WebGPU in WGSL). Values are read asynchronously so the same code runs on every device.
 *
 * @module @lowrank/tensor
 */

// WebGPU's types (GPUDevice, …) appear in this package's declarations: kept in the emitted index.d.ts
/// <reference types="@webgpu/types" preserve="true" />

// the op methods of Tensor (x.add(y), …) are attached to its prototype by this module
import './tensor-methods.js';

export type {
  AdamUpdateParams,
  AttentionDropout,
  AttentionGrads,
  AttentionOutput,
  AttentionParams,
  Backend,
  BinaryOp,
  CrossEntropyRowsParams,
  KernelName,
  KernelTable,
  MatmulEpilogue,
  NormKind,
  NormOutput,
  NormParamGrads,
  QuantizedStorages,
  QuantView,
  ReduceOp,
  UnaryOp,
} from './backend.js';
export {
  type CompiledFunction,
  type CompiledResult,
  type CompiledStats,
  type CompileOptions,
  compile,
} from './compile/compile.js';
export type { MemoryPlan } from './compile/plan.js';
export type { SlotStats } from './compile/step.js';
export { CaptureError } from './compile/trace.js';
export {
  type AdapterDescription,
  type AutoDeviceChoice,
  adapterName,
  autoDevice,
  describeAdapter,
  isSoftwareAdapter,
} from './device-rule.js';
export type { DType, TypedArray } from './dtype.js';
export { DTYPES, promoteTypes } from './dtype.js';
export {
  captureEpoch,
  captureGuard,
  hostValue,
  invalidateCaptures,
  isTracing,
  onReplay,
} from './engine/capture.js';
export {
  type AutogradHooks,
  backendAllocationCount,
  type FusionOptions,
  getAutogradHooks,
  getBackend,
  getDefaultDevice,
  hasBackend,
  isFusionEnabled,
  keep,
  type MemoryInfo,
  memory,
  missingKernels,
  newStorage,
  onSavedForBackward,
  peakMemory,
  pendingProgram,
  type QuantizedBytes,
  type QuantizedHolder,
  realize,
  registerBackend,
  registerKernels,
  resetPeakMemory,
  runOp,
  setAutogradHooks,
  setDefaultDevice,
  setFusion,
  type TensorContainer,
  tidy,
  willRecord,
  withoutRecording,
} from './engine.js';
export { OpError } from './errors.js';
export {
  type CastExpr,
  type ConstExpr,
  type ElementwiseProgram,
  type Expr,
  exprKey,
  type LoadExpr,
  linearize,
  type OpExpr,
  type RandomDist,
  type RandomExpr,
  type RandomLeaf,
  type Step,
} from './expr/program.js';
export {
  BINARY_OPS,
  NON_DIFFERENTIABLE_SCALAR_OPS,
  type ScalarOpDef,
  type ScalarOpName,
  TABLE as SCALAR_OPS,
  UNARY_OPS,
} from './expr/table.js';
export { type InitOptions, type InitResult, init } from './init.js';
export { KERNEL_NAMES } from './kernel-names.js';
export {
  type AttentionInputGrads,
  type ScaledDotProductAttentionBackwardOptions,
  type ScaledDotProductAttentionOptions,
  scaledDotProductAttention,
  scaledDotProductAttentionBackward,
} from './ops/attention.js';
export type {
  AttentionAttrs,
  CrossEntropyAttrs,
  LoraMatmulAttrs,
  NormAttrs,
  OpAttrs,
  OpName,
  Reduction,
} from './ops/attrs.js';
export { NON_DIFFERENTIABLE_OPS } from './ops/attrs.js';
export { cat, chunk, split, stack } from './ops/combine.js';
export {
  arange,
  eye,
  fromTypedArray,
  full,
  fullLike,
  hostTensor,
  ones,
  onesLike,
  type RandomOptions,
  rand,
  randint,
  randn,
  type TensorOptions,
  tensor,
  uniform,
  zeros,
  zerosLike,
} from './ops/creation.js';
export {
  abs,
  add,
  cast,
  ceil,
  clamp,
  cos,
  div,
  eq,
  exp,
  floor,
  ge,
  gelu,
  gt,
  le,
  log,
  logicalAnd,
  logicalNot,
  logicalOr,
  lt,
  maximum,
  minimum,
  mul,
  ne,
  neg,
  pow,
  reciprocal,
  relu,
  round,
  rsqrt,
  sigmoid,
  sign,
  silu,
  sin,
  sqrt,
  square,
  sub,
  tanh,
  where,
} from './ops/elementwise.js';
export { embedding, gather, indexAdd, indexSelect, oneHot, scatterAdd, tril, triu } from './ops/indexing.js';
export { gatherMatmul, type LoraExpandOptions, loraExpand } from './ops/lora.js';
export {
  type FusedCrossEntropyOptions,
  type LinearCrossEntropyGrads,
  type LinearCrossEntropyNeeds,
  type LinearCrossEntropyOptions,
  linearCrossEntropy,
  linearCrossEntropyBackward,
  rowCrossEntropy,
} from './ops/loss.js';
export { type AddmmOptions, addmm, matmul } from './ops/matmul.js';
export {
  layerNorm,
  type NormGrads,
  type NormNeeds,
  normBackward,
  rmsNorm,
} from './ops/norm.js';
export { type AdamUpdateOptions, adamUpdate_ } from './ops/optim.js';
export {
  argmax,
  argmin,
  logSoftmax,
  logsumexp,
  max,
  mean,
  min,
  prod,
  softmax,
  std,
  sum,
  variance as var,
} from './ops/reduce.js';
export { rotateHalf } from './ops/rotary.js';
export { swiglu } from './ops/swiglu.js';
export {
  clone,
  contiguous,
  detach,
  expand,
  flatten,
  narrow,
  permute,
  reshape,
  slice,
  squeeze,
  transpose,
  unsqueeze,
  view,
} from './ops/views.js';
export {
  ATTENTION_STREAM,
  attentionKeep,
  dropThreshold,
  PHILOX_WGSL,
  philox4x32,
  philoxNormal,
  philoxUniform,
  philoxWord,
  type RandomKey,
  wordToUniform,
} from './philox.js';
export { quantizedEmbedding } from './quant/embedding.js';
export {
  DOUBLE_QUANT_BLOCK,
  dequantizeData,
  type HalfFormat,
  halfData,
  isHalfFormat,
  NF4_VALUES,
  type QuantFormat,
  type QuantizedData,
  type QuantizeOptions,
  quantizeData,
} from './quant/format.js';
export { bf16Bits, bf16Value, f16Bits, f16Value } from './quant/half.js';
export {
  dequantize,
  type QuantizedMatmulAttrs,
  type QuantizedMatmulOptions,
  type QuantizedMemoryInfo,
  type QuantizedParts,
  QuantizedWeight,
  quantizedMatmul,
  quantizedMemory,
} from './quant/weight.js';
export { defaultGenerator, drawRandomKey, Generator, manualSeed } from './random.js';
export type { Device, View } from './storage.js';
export { Storage } from './storage.js';
export { type Dims, type NestedArray, type Operand, Tensor } from './tensor.js';

/**
 * Disposes tensors (arrays and objects of tensors are searched).
 *
 * @example
 * const a = lr.ones([2]);
 * const b = lr.zeros([2]);
 * lr.dispose(a, { b }); // both are disposed
 */
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

export {
  destroyWebGPU,
  MATMUL_CONFIGS,
  type MatmulConfig,
  setMatmulConfig,
  setSkinnyMatmul,
  type WebGPUInitOptions,
  type WebGPUProfiler,
  webgpuDevice,
  webgpuProfiler,
  webgpuStats,
} from './backends/webgpu/index.js';
