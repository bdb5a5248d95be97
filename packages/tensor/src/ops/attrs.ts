import type { DType } from '../dtype.js';

/**
 * The parameters each recorded op reports to the autograd hook, by op name. Gradient rules in
 * the autograd package read these; keeping them typed here is the contract between the two.
 */
export interface OpAttrs {
  // elementwise, one input
  neg: Empty;
  abs: Empty;
  exp: Empty;
  log: Empty;
  sqrt: Empty;
  rsqrt: Empty;
  tanh: Empty;
  sigmoid: Empty;
  relu: Empty;
  silu: Empty;
  sign: Empty;
  square: Empty;
  reciprocal: Empty;
  sin: Empty;
  cos: Empty;
  floor: Empty;
  ceil: Empty;
  round: Empty;
  logicalNot: Empty;
  gelu: { approximate: 'tanh' | 'none' };
  clamp: { min: number | null; max: number | null };
  cast: { dtype: DType };
  contiguous: Empty;
  // elementwise, two inputs (broadcasting) and where(cond, a, b)
  add: Empty;
  sub: Empty;
  mul: Empty;
  div: Empty;
  pow: Empty;
  maximum: Empty;
  minimum: Empty;
  eq: Empty;
  ne: Empty;
  lt: Empty;
  le: Empty;
  gt: Empty;
  ge: Empty;
  logicalAnd: Empty;
  logicalOr: Empty;
  where: Empty;
  // reductions (dims normalised, sorted ascending)
  sum: Reduction;
  mean: Reduction;
  prod: Reduction;
  max: Reduction;
  min: Reduction;
  argmax: Reduction;
  argmin: Reduction;
  logsumexp: Reduction;
  softmax: { dim: number };
  logSoftmax: { dim: number };
  // linear algebra
  matmul: Empty;
  // views: squeeze/unsqueeze/flatten/view are recorded as reshape, transpose as permute,
  // narrow as slice, broadcastTo as expand
  reshape: { shape: readonly number[] };
  permute: { dims: readonly number[] };
  expand: { shape: readonly number[] };
  slice: { dim: number; start: number; end: number; step: number };
  // indexing and combining
  gather: { dim: number };
  indexSelect: { dim: number };
  scatterAdd: { dim: number };
  indexAdd: { dim: number };
  cat: { dim: number };
}

type Empty = Record<string, never>;
export interface Reduction {
  dims: readonly number[];
  keepdim: boolean;
}

export type OpName = keyof OpAttrs;

/** Ops whose outputs carry no gradient (comparisons, arg-reductions, rounding, logical ops). */
export const NON_DIFFERENTIABLE_OPS: readonly OpName[] = [
  'eq',
  'ne',
  'lt',
  'le',
  'gt',
  'ge',
  'logicalAnd',
  'logicalOr',
  'logicalNot',
  'argmax',
  'argmin',
  'sign',
  'floor',
  'ceil',
  'round',
];
