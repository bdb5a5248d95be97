import type { DType, TypedArray } from './dtype.js';
import type { SlotMemory } from './engine/slots.js';
import type { ElementwiseProgram } from './expr/program.js';
import type { RandomKey } from './philox.js';
import type { Device, Storage, View } from './storage.js';

export type { BinaryOp, UnaryOp } from './expr/table.js';

/**
 * Scalars of the fused `adamUpdate` kernel, derived on the host (in float64) from the optimizer's
 * options and step so that every backend applies the same arithmetic:
 * `p ← p·decay; g ← g + l2·p; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
 * v̂ ← max(v̂, v) (AMSGrad); p ← p − stepSize · m / (√v̂ / sqrtBc2 + eps)`.
 */
export interface AdamUpdateParams {
  /** Multiplier of the parameter before the step: `1 − lr·weightDecay` (AdamW), else 1. */
  decay: number;
  /** L2 coefficient added to the gradient (`weightDecay` for Adam, 0 for AdamW). */
  l2: number;
  /** First-moment decay β1. */
  beta1: number;
  /** Second-moment decay β2. */
  beta2: number;
  /** `lr / (1 − β1^step)`. */
  stepSize: number;
  /** `√(1 − β2^step)`. */
  sqrtBc2: number;
  /** Added to the denominator. */
  eps: number;
}

/** Which normalisation the `norm` kernels compute: LayerNorm or RMSNorm. */
export type NormKind = 'layer' | 'rms';

/** What the `norm` kernel returns: the normalised rows, and their statistics when asked for. */
export interface NormOutput {
  /** The output, contiguous, of the program's shape. */
  readonly y: Storage;
  /** Each row's mean ([rows]; layer kind with `stats` only, else null). */
  readonly mean: Storage | null;
  /** Each row's 1/σ ([rows]; with `stats` only, else null). */
  readonly rstd: Storage | null;
}

/** What the `normParamGrad` kernel returns. */
export interface NormParamGrads {
  /** The weight's gradient [cols]. */
  readonly weight: Storage;
  /** The bias's gradient [cols], or null when not asked for. */
  readonly bias: Storage | null;
}

/** The terms a `matmulEpilogue` kernel adds to alpha·A·B at its store. */
export interface MatmulEpilogue {
  /** [N] (any stride), added to every row; null: none. */
  readonly bias: View | null;
  /** [B, M, N] (any strides), added elementwise; null: none. */
  readonly residual: View | null;
  /** Scale of the product. */
  readonly alpha: number;
}

/** Options of the `crossEntropyRows` kernel. */
export interface CrossEntropyRowsParams {
  /** Rows whose label equals this get loss 0 (and gradient 0). */
  ignoreIndex: number;
  /** ε of label smoothing: the target is (1 − ε)·one-hot + ε/cols. */
  labelSmoothing: number;
  /** Overwrite x's memory with d(loss_row)/d(x_row) = softmax(x_row) − target_row. */
  writeGrad: boolean;
}

/**
 * Options of the `attention` kernels. Views are 4-D: q [B, H, L, E], k [B, Hkv, S, E],
 * v [B, Hkv, S, Ev] (any strides; H a multiple of Hkv, query head h reads kv head ⌊h / (H/Hkv)⌋),
 * the mask [B, H, L, S] (float32 added to the scores, or bool: true = may attend; 0-strides
 * where broadcast), out and its gradient [B, H, L, Ev], lse [B, H, L].
 */
export interface AttentionParams {
  /** Factor of q·kᵀ. */
  scale: number;
  /** Query i attends to keys j ≤ i only (top-left aligned, as PyTorch's is_causal). */
  causal: boolean;
  /** Forward only: also return the rows' logsumexp (what the backward kernel reads). */
  lse: boolean;
  /** Dropout of the probabilities (absent or null: none); the backward regenerates its mask. */
  dropout?: AttentionDropout | null;
}

/**
 * Dropout inside the attention kernels, as FlashAttention applies it: the probability of query
 * row i, key j of batch b and query head h is kept when `attentionKeep(b·H + h, i, j, key,
 * threshold)` (philox.ts) and then multiplied by `scale`; dropped ones are 0. The row's softmax
 * (its sum and logsumexp) is that of the undropped probabilities.
 */
export interface AttentionDropout {
  /** The drop probability p (for messages; the kernels read the threshold and scale). */
  p: number;
  /** `dropThreshold(p)`: keep where the top 24 bits of the Philox word are ≥ it. */
  threshold: number;
  /** 1 / (1 − p) (0 when p = 1). */
  scale: number;
  /** The draw's key (the object `drawRandomKey` returned: a compiled replay swaps in a new one). */
  key: RandomKey;
}

/** What the `attention` kernel returns. */
export interface AttentionOutput {
  /** softmax(q·kᵀ·scale + mask)·v, contiguous [B, H, L, Ev]. */
  readonly out: Storage;
  /** logsumexp of each row of masked scores [B, H, L] (−∞ for a row with no key), or null. */
  readonly lse: Storage | null;
}

/** What the `attentionBackward` kernel returns, contiguous, shaped like q, k and v (kv heads). */
export interface AttentionGrads {
  /** [B, H, L, E]. */
  readonly dq: Storage;
  /** [B, Hkv, S, E], summed over the query heads of each kv head. */
  readonly dk: Storage;
  /** [B, Hkv, S, Ev], summed likewise. */
  readonly dv: Storage;
}

/**
 * A quantized [rows, cols] matrix as the quantized kernels read it (layout: quant/format.ts):
 * packed codes and block scales, with double quantization the scales' int8 codes, their steps
 * and mean.
 */
export interface QuantView {
  /** `'nf4'` (4-bit codes into NF4_VALUES), `'int8'`, or 16-bit floats `'f16'` / `'bf16'` (no scales). */
  readonly format: 'nf4' | 'int8' | 'f16' | 'bf16';
  /** Rows of the matrix (a linear layer's output features). */
  readonly rows: number;
  /** Columns (input features); absmax blocks run along them. */
  readonly cols: number;
  /** Values per absmax block. */
  readonly blockSize: number;
  /** int32 words of packed codes, ⌈cols / (32/bits)⌉ per row. */
  readonly codes: Storage;
  /** float32 scales [rows·⌈cols/blockSize⌉]; with `steps`, int32 words of int8 scale codes. */
  readonly scales: Storage;
  /** Double quantization: float32 step per 256 scales (null: scales are float32). */
  readonly steps: Storage | null;
  /** Double quantization: added to every dequantized scale. */
  readonly scaleMean: number;
}

/** What the `quantize` kernel returns: the storages of a `QuantView` (layout: quant/format.ts). */
export interface QuantizedStorages {
  /** int32 words of packed codes. */
  readonly codes: Storage;
  /** float32 scales, or int32 words of their int8 codes under double quantization. */
  readonly scales: Storage;
  /** Double quantization: float32 step per 256 scales; else null. */
  readonly steps: Storage | null;
}

/** Reductions of the `reduce` kernel. */
export type ReduceOp = 'sum' | 'prod' | 'max' | 'min' | 'argmax' | 'argmin';

/**
 * Every kernel a backend provides, by op name. Shape, broadcasting and dtype rules are settled
 * by the op definitions (packages/tensor/src/ops) before a kernel runs: kernels receive strided
 * views already broadcast to the output shape, inputs of one dtype, and return a new contiguous
 * storage (except `assign`, which writes into its destination).
 */
export interface KernelTable {
  /**
   * Evaluates an elementwise program (expr/program.ts) over its shape: into a new contiguous
   * storage, or, given `dst` (a strided view of that shape), into dst's memory in place (then
   * dst's storage is returned). Every program input is real memory. Unary and binary ops, where,
   * casts, copies, fills and assignment are all programs: backends generate one kernel per
   * program structure and cache it.
   */
  elementwise(program: ElementwiseProgram, dst?: View): Storage;
  /**
   * Reduction of the values of an elementwise program (a plain view is a program of one load,
   * and a fused chain is its prologue): its shape is [...kept, ...reduced] (already permuted);
   * each of the `outer` outputs reduces the `inner` trailing elements (row-major over the
   * reduced dims). Arg-reductions return the index within those `inner` elements (first
   * occurrence) as int32.
   */
  reduce(op: ReduceOp, x: ElementwiseProgram, outer: number, inner: number, outDtype: DType): Storage;
  /**
   * Softmax over the last dim of a float32 program of shape [rows, cols] (its elementwise chain,
   * a scale and a mask say, is the prologue): `exp(x − max) / Σ exp(x − max)` per row, NaN in a
   * row with a NaN, +∞ or only −∞ (as the composite definition gives). A new contiguous storage.
   */
  softmax(x: ElementwiseProgram, rows: number, cols: number): Storage;
  /**
   * Fused layer/RMS normalisation of each row of a float32 program of shape [...rows, cols]
   * (its elementwise chain, a residual add say, is the prologue): layer: `(x − mean)·rstd·w + b`,
   * rms: `x·rstd·w`, with `rstd = 1/√(var + eps)` (biased variance) or `1/√(mean(x²) + eps)`.
   * `weight`/`bias` are 1-D float32 views of `cols` (null: 1 and 0). With `stats`, also returns
   * the rows' mean (layer only) and rstd, [rows] each, which the backward kernels read.
   */
  norm(
    kind: NormKind,
    x: ElementwiseProgram,
    rows: number,
    cols: number,
    weight: View | null,
    bias: View | null,
    eps: number,
    stats: boolean,
  ): NormOutput;
  /**
   * Input gradient of `norm`, per row: with x̂ = (x − mean)·rstd (rms: x·rstd) and g' = g·w,
   * `dx = rstd·(g' − mean(g') − x̂·mean(g'·x̂))` (rms: without the `mean(g')` term). `x` and `grad`
   * are float32 programs of shape [...rows, cols]; `mean` (null for rms) and `rstd` are [rows].
   */
  normBackward(
    kind: NormKind,
    x: ElementwiseProgram,
    grad: ElementwiseProgram,
    rows: number,
    cols: number,
    weight: View | null,
    mean: View | null,
    rstd: View,
  ): Storage;
  /** Weight (and, with `bias`, bias) gradients of `norm`: `dw = Σ_rows g·x̂`, `db = Σ_rows g`, [cols] each. */
  normParamGrad(
    kind: NormKind,
    x: ElementwiseProgram,
    grad: ElementwiseProgram,
    rows: number,
    cols: number,
    mean: View | null,
    rstd: View,
    bias: boolean,
  ): NormParamGrads;
  /**
   * Cross-entropy of each row of float32 logits x [rows, cols] (a row-major view: strides
   * [cols, 1], any offset, real memory) against int32 class indices `labels` [rows] (any stride):
   * loss_r = logsumexp(x_r) − (1 − ε)·x_r[t] − (ε/cols)·Σ_j x_r[j], 0 where t = ignoreIndex.
   * A label t out of [0, cols) that is not ignoreIndex (a negative one included) is an error:
   * an OpError naming `crossEntropyRows`, the label and the class count, thrown at once on the
   * CPU (before x is written) and at the next read-back on WebGPU (as the index kernels').
   * Returns the losses [rows]; with `writeGrad`, x's memory is
   * overwritten with softmax(x_r) − ((1 − ε)·onehot(t) + ε/cols) (0 on ignored rows), so a
   * chunk of LM-head logits becomes its own gradient without a second [rows, cols] buffer.
   */
  crossEntropyRows(
    x: View,
    labels: View,
    rows: number,
    cols: number,
    params: CrossEntropyRowsParams,
  ): Storage;
  /** Batched float32 matmul: a is [B, M, K], b is [B, K, N] (any strides); out is [B, M, N]. */
  matmul(a: View, b: View, batch: number, m: number, k: number, n: number): Storage;
  /**
   * out[i] = residual[i] + alpha · a[i] · w[index[i]] for i < batch (float32, any strides): a is
   * [B, M, K]; w is [S, K, N] gathered per batch entry by the int32 [B] `index` (each in [0, S):
   * any other, a negative one included, is an error, at read-back on WebGPU), or [B, K, N] when
   * index is null; residual [B, M, N]
   * or null (0). LoRA's fused expand and its per-sample-adapter (BGMV) matmuls. Out: [B, M, N].
   */
  loraMatmul(
    a: View,
    w: View,
    index: View | null,
    residual: View | null,
    alpha: number,
    batch: number,
    m: number,
    k: number,
    n: number,
  ): Storage;
  /**
   * matmul with a fused epilogue: out[b, i, j] = alpha·(a[b]·b[b])[i, j] + bias[j] + residual[b, i, j]
   * (the terms whose view is null are left out).
   */
  matmulEpilogue(
    a: View,
    b: View,
    batch: number,
    m: number,
    k: number,
    n: number,
    epilogue: MatmulEpilogue,
  ): Storage;
  /**
   * Fused attention (views and shapes as `AttentionParams` says): per row, the softmax of the
   * scaled, masked scores against every key, times v, without an [L, S] matrix in memory. A row
   * whose keys are all masked gives NaN (as the composed softmax of only −∞).
   */
  attention(q: View, k: View, v: View, mask: View | null, params: AttentionParams): AttentionOutput;
  /**
   * Gradients of `attention` from its output, the output's gradient and the lse it kept:
   * p = exp(s − lse), D = rowsum(grad·out), ds = p·(grad·vᵀ − D); dq = scale·ds·k,
   * dk = scale·dsᵀ·q, dv = pᵀ·grad (dk and dv summed over the query heads sharing a kv head).
   */
  attentionBackward(
    q: View,
    k: View,
    v: View,
    mask: View | null,
    out: View,
    grad: View,
    lse: View,
    params: AttentionParams,
  ): AttentionGrads;
  /** torch.gather: out[i…] = x[i… with index[i…] at `dim`]; out has index's shape. */
  gather(x: View, dim: number, index: View): Storage;
  /** torch.index_select with a 1-D int32 index. */
  indexSelect(x: View, dim: number, index: View): Storage;
  /** Copy of `target` with src added at `index` along `dim` (torch.scatter_add). */
  scatterAdd(target: View, dim: number, index: View, src: View): Storage;
  /** Copy of `target` with src's slices added at the 1-D `index` along `dim` (torch.index_add). */
  indexAdd(target: View, dim: number, index: View, src: View): Storage;
  /**
   * out = a · dequant(w)ᵀ (`transpose`, a [M, cols] → [M, rows]) or a · dequant(w) (a [M, rows]
   * → [M, cols]), float32, with a any 2-D strides: each weight value is dequantized as the kernel
   * loads it (code → NF4 table or int8, times its block's scale), accumulating in float32 or
   * wider. Out: [M, rows] or [M, cols], contiguous.
   */
  quantMatmul(a: View, w: QuantView, m: number, transpose: boolean): Storage;
  /** dequant(w) as a contiguous float32 [rows, cols] storage. */
  dequantize(w: QuantView): Storage;
  /**
   * Quantizes a float32 [rows, cols] matrix (a view with strides [cols, 1], real memory) as
   * quant/format.ts defines it; with `scaleMean` not null, double-quantizes the scales centred by
   * it. The CPU's is the host definition in float64; a GPU's computes in float32, so a value
   * within rounding of a code boundary may take the neighbouring code.
   */
  quantize(
    w: View,
    format: 'nf4' | 'int8' | 'f16' | 'bf16',
    rows: number,
    cols: number,
    blockSize: number,
    scaleMean: number | null,
  ): QuantizedStorages;
  /**
   * Fused Adam/AdamW step, in place: `param`, `expAvg`, `expAvgSq` (and `maxExpAvgSq` for
   * AMSGrad) are updated from `grad`. All views are contiguous float32 views of one size over
   * distinct storages (the op checks this and falls back to unfused ops otherwise).
   */
  adamUpdate(
    param: View,
    grad: View,
    expAvg: View,
    expAvgSq: View,
    maxExpAvgSq: View | null,
    params: AdamUpdateParams,
  ): void;
}

/** Name of a kernel in a `KernelTable` (what `registerKernels` and `missingKernels` take). */
export type KernelName = keyof KernelTable;

/** A device backend: memory management plus its registered kernels. */
export interface Backend {
  /** The device this backend serves (its key in the registry). */
  readonly device: Device;
  /** Copies host data into a new storage. */
  upload(data: TypedArray, dtype: DType): Storage;
  /**
   * A new storage of `size` elements whose contents are undefined until a kernel writes them
   * (cat writes every element, one input's slice at a time, so a zero fill would be wasted).
   */
  allocate(dtype: DType, size: number): Storage;
  /** Reads a whole storage back (a fresh copy in the CPU representation of its dtype). */
  read(storage: Storage): Promise<TypedArray>;
  /** Returns the storage's memory to the backend. */
  release(storage: Storage): void;
  /**
   * Reserves `bytes` for a slot of a captured step's memory plan (compile/): memory outside the
   * tensor accounting, like a pool's free buffers, whose views become the storages of the values
   * the plan puts there (engine/slots.ts). Optional: a backend without it (or one returning null)
   * serves replays from its usual allocator, and the plan says its slots are not bound.
   */
  reserve?(bytes: number): SlotMemory | null;
  /** Submits queued work; surfaces asynchronous device errors. Optional. */
  flush?(): Promise<void>;
  /** Largest storage in bytes this backend can hold in one buffer. */
  readonly maxStorageBytes: number;
  /** Short description of the device (adapter name) for notices and benchmarks. */
  readonly description: string;
  /** Bytes a storage of `size` elements of `dtype` takes (what memory() counts for it). */
  storageBytes(dtype: DType, size: number): number;
  /** Throws an error naming `op` when a storage of `bytes` cannot exist on this device. */
  checkStorageBytes(op: string, bytes: number): void;
  /** Distinct storages one fused elementwise kernel may read (binding limits). */
  readonly maxFusedInputs: number;
}
