import type { DType } from '../dtype.js';
import { NON_DIFFERENTIABLE_SCALAR_OPS, type ScalarOpName } from '../expr/table.js';
import type { RandomKey } from '../philox.js';
import type { QuantizedMatmulAttrs } from '../quant/weight.js';
import type { Tensor } from '../tensor.js';

/**
 * Elementwise ops take no attributes: one `Empty` entry per row of the op table (the two gelu
 * rows are one public op, `gelu`, whose form is an attribute).
 */
type ElementwiseAttrs = { [K in Exclude<ScalarOpName, 'geluTanh' | 'geluErf'>]: Empty };

/**
 * The parameters each recorded op reports to the autograd hook, by op name. Gradient rules in
 * the autograd package read these; keeping them typed here is the contract between the two.
 */
export interface OpAttrs extends ElementwiseAttrs {
  /** `gelu(x)`: which GELU form (`tanh` is GPT-2's gelu_new). */
  gelu: {
    /** `'tanh'` or `'none'` (exact erf). */
    approximate: 'tanh' | 'none';
  };
  /** `clamp(x, min, max)`: the bounds (null for an open side). */
  clamp: {
    /** Lower bound, or null. */
    min: number | null;
    /** Upper bound, or null. */
    max: number | null;
  };
  /** `cast(x, dtype)`: the target dtype. */
  cast: {
    /** Target dtype. */
    dtype: DType;
  };
  /** `contiguous(x)` when it copies: no attributes. */
  contiguous: Empty;
  // reductions (dims normalised, sorted ascending)
  /** `sum` reduction: the dims reduced and whether they are kept. */
  sum: Reduction;
  /** `mean` reduction: the dims reduced and whether they are kept. */
  mean: Reduction;
  /** `prod` reduction: the dims reduced and whether they are kept. */
  prod: Reduction;
  /** `max` reduction: the dims reduced and whether they are kept. */
  max: Reduction;
  /** `min` reduction: the dims reduced and whether they are kept. */
  min: Reduction;
  /** `argmax` reduction: the dims reduced and whether they are kept. */
  argmax: Reduction;
  /** `argmin` reduction: the dims reduced and whether they are kept. */
  argmin: Reduction;
  /** `logsumexp` reduction: the dims reduced and whether they are kept. */
  logsumexp: Reduction;
  /** `softmax(x, dim)`: the dim normalised over. */
  softmax: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
  /** `swiglu(gate, up)`: no attributes. */
  swiglu: Empty;
  /** `rotateHalf(x, dim)`: the dim whose halves swap, normalised to be non-negative. */
  rotateHalf: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
  /** `layerNorm(x, shape, weight?, bias?, eps)`: see `NormAttrs`. */
  layerNorm: NormAttrs;
  /** `rmsNorm(x, shape, weight?, eps)`: see `NormAttrs` (bias is always false). */
  rmsNorm: NormAttrs;
  /** `logSoftmax(x, dim)`: the dim normalised over. */
  logSoftmax: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
  // linear algebra
  /** `matmul(a, b)`: no attributes (shapes say everything). */
  matmul: Empty;
  /** `addmm(a, b, { bias, residual, alpha })`: inputs `[a, b, bias?, residual?]` (those present). */
  addmm: {
    /** Scale of the product. */
    alpha: number;
    /** Whether a bias is among the inputs (after b). */
    bias: boolean;
    /** Whether a residual is among the inputs (last). */
    residual: boolean;
  };
  /** `loraExpand(base, h, w, { scale, index })`: base + scale·h·w (w[index[b]] per sample when indexed). */
  loraExpand: LoraMatmulAttrs;
  /** `gatherMatmul(x, w, index)`: x[b]·w[index[b]] (scale 1, always indexed). */
  gatherMatmul: LoraMatmulAttrs;
  /** `quantizedMatmul(x, w)`: x·dequant(w)ᵀ (or x·dequant(w)); inputs `[x, codes, scales, steps?]`. */
  quantizedMatmul: QuantizedMatmulAttrs;
  // views: squeeze/unsqueeze/flatten/view are recorded as reshape, transpose as permute,
  // narrow as slice, broadcastTo as expand
  /** `reshape` (also squeeze, unsqueeze, flatten, view): the new shape. */
  reshape: {
    /** The output shape. */
    shape: readonly number[];
  };
  /** `permute` (also transpose): output dim i is input dim `dims[i]`. */
  permute: {
    /** The permutation. */
    dims: readonly number[];
  };
  /** `expand` (also broadcastTo): the broadcast shape. */
  expand: {
    /** The output shape. */
    shape: readonly number[];
  };
  /** `slice` (also narrow): a strided range along one dim, indices normalised. */
  slice: {
    /** The dim, normalised to be non-negative. */
    dim: number;
    /** First index (inclusive). */
    start: number;
    /** End index (exclusive). */
    end: number;
    /** Stride along the dim (positive). */
    step: number;
  };
  // indexing and combining
  /** `gather(x, dim, index)`: the dim indexed. */
  gather: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
  /** `indexSelect(x, dim, index)`: the dim indexed. */
  indexSelect: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
  /** `scatterAdd(target, dim, index, src)`: the dim indexed. */
  scatterAdd: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
  /** `indexAdd(target, dim, index, src)`: the dim indexed. */
  indexAdd: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
  /** `rowCrossEntropy(logits, labels)` (ops/loss.ts): see `CrossEntropyAttrs`. */
  rowCrossEntropy: CrossEntropyAttrs & {
    /** d(loss)/d(logits) [N, V] (per row for 'none'), when recorded. */
    grad: Tensor | null;
  };
  /** `linearCrossEntropy(hidden, weight, labels, bias?)` (ops/loss.ts): see `CrossEntropyAttrs`. */
  linearCrossEntropy: CrossEntropyAttrs & {
    /** Rows of logits computed at a time. */
    chunkSize: number;
    /** d(loss)/d(hidden) [N, C] (per row, unscaled, for 'none'), when hidden is recorded. */
    dHidden: Tensor | null;
    /** d(loss)/d(weight) [V, C], when the weight requires grad. */
    dWeight: Tensor | null;
    /** d(loss)/d(bias) [V], when the bias requires grad. */
    dBias: Tensor | null;
    /**
     * The inputs, kept for the backward pass to recompute the chunks, only with reduction 'none'
     * and a weight or bias that requires grad (their gradient needs each row's upstream gradient
     * inside the chunk sum); null otherwise.
     */
    recompute: Tensor | null;
    /** The weight, kept with `recompute` (the hidden states) for the recomputation. */
    recomputeWeight: Tensor | null;
    /** The labels, kept with `recompute`. */
    recomputeLabels: Tensor | null;
    /** The bias (if any), kept with `recompute`. */
    recomputeBias: Tensor | null;
  };
  /** `scaledDotProductAttention(q, k, v, options)` (ops/attention.ts): see `AttentionAttrs`. */
  scaledDotProductAttention: AttentionAttrs;
  /** `cat(tensors, dim)`: the dim concatenated along. */
  cat: {
    /** The dim, normalised to be non-negative. */
    dim: number;
  };
}

type Empty = Record<string, never>;
/**
 * Attributes of a fused norm (ops/norm.ts). Its inputs are `[x, weight?, bias?]` (those present);
 * `mean` (layer norm) and `rstd` are residuals, [rows] each, computed only when the op is recorded.
 */
export interface NormAttrs {
  /** The trailing dims normalised over. */
  normalizedShape: readonly number[];
  /** Added to the variance (mean square for RMS). */
  eps: number;
  /** Whether a weight is among the inputs (at position 1). */
  weight: boolean;
  /** Whether a bias is among the inputs (after the weight). */
  bias: boolean;
  /** Each row's mean (layer norm, when recorded). */
  mean?: Tensor;
  /** Each row's 1/√(var + eps) (when recorded). */
  rstd?: Tensor;
}

/**
 * Attributes of the fused attention (ops/attention.ts). Its inputs are `[q, k, v, mask?]`; `lse`
 * (each row's logsumexp, [..., L]) is a residual computed only when the op is recorded.
 */
export interface AttentionAttrs {
  /** Factor of q·kᵀ. */
  scale: number;
  /** Top-left aligned causal masking. */
  causal: boolean;
  /** Grouped-query heads (k/v have fewer heads than q). */
  enableGqa: boolean;
  /** The mask input's kind, or null without one. */
  mask: 'bool' | 'float' | null;
  /** The dropout the forward applied (its probability and key), or null: the backward's mask. */
  dropout?: AttentionDropoutDraw | null;
  /** logsumexp of each row of masked scores (when recorded). */
  lse?: Tensor;
}

/** Options shared by the fused cross-entropy ops (PyTorch's meaning for each). */
export interface CrossEntropyAttrs {
  /** Rows with this label have no loss and are not counted in the mean. */
  ignoreIndex: number;
  /** ε: the target is (1 − ε)·one-hot + ε/V. */
  labelSmoothing: number;
  /** 'mean' over the rows not ignored, 'sum', or 'none' (a loss per row, 0 where ignored). */
  reduction: 'mean' | 'sum' | 'none';
}

/** Attributes of a reduction. */
export interface Reduction {
  /** The dims reduced, normalised and sorted ascending. */
  dims: readonly number[];
  /** Whether reduced dims stay as size 1. */
  keepdim: boolean;
}

/** Name of an op that autograd can record (a key of `OpAttrs`). */
export type OpName = keyof OpAttrs;

/** Ops whose outputs carry no gradient: the table's non-differentiable rows and the arg-reductions. */
export const NON_DIFFERENTIABLE_OPS: readonly OpName[] = [
  ...NON_DIFFERENTIABLE_SCALAR_OPS.filter(
    (op): op is keyof ElementwiseAttrs => op !== 'geluTanh' && op !== 'geluErf',
  ),
  'argmax',
  'argmin',
];

/** Attributes of the LoRA matmul ops (`loraExpand`, `gatherMatmul`). */
export interface LoraMatmulAttrs {
  /** Factor of the product. */
  scale: number;
  /** Whether the last input is a per-sample index into a stacked weight [S, K, N]. */
  indexed: boolean;
}

/** An attention's dropout as its forward drew it: the backward regenerates the same mask. */
export interface AttentionDropoutDraw {
  /** The drop probability. */
  readonly p: number;
  /** The key the forward drew from its generator. */
  readonly key: RandomKey;
}
