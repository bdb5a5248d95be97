import type { CrossEntropyRowsParams } from '../backend.js';
import { runOp, willRecord, withoutRecording } from '../engine/dispatch.js';
import { getBackend } from '../engine/registry.js';
import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import type { CrossEntropyAttrs, OpAttrs } from './attrs.js';
import { cat } from './combine.js';
import { zeros } from './creation.js';
import { cast, div, maximum, ne } from './elementwise.js';
import { add_, mul_ } from './inplace.js';
import { matmul } from './matmul.js';
import { sum } from './reduce.js';
import { kernel, viewAs, wrap } from './util.js';
import { clone, contiguous, slice, transpose, unsqueeze } from './views.js';

/** Options of the fused cross-entropy ops (PyTorch's `cross_entropy` meanings). */
export interface FusedCrossEntropyOptions {
  /** Rows whose label equals this have no loss and are not counted in the mean. Default −100. */
  ignoreIndex?: number;
  /** ε in [0, 1]: the target is (1 − ε)·one-hot + ε/V. Default 0. */
  labelSmoothing?: number;
  /** 'mean' over the rows not ignored (NaN when all are), 'sum', or 'none' ([N], 0 where ignored). Default 'mean'. */
  reduction?: 'mean' | 'sum' | 'none';
}

/** Options of `linearCrossEntropy`. */
export interface LinearCrossEntropyOptions extends FusedCrossEntropyOptions {
  /** Added to every row of logits ([V]). */
  bias?: Tensor | null;
  /**
   * Rows of logits computed at a time (default: the rows split evenly into as few chunks as fit
   * in 64 MiB each on the CPU, 256 MiB on WebGPU within its largest buffer).
   */
  chunkSize?: number;
}

/**
 * Bytes of logits one chunk may hold by default. On the CPU 64 MiB (333 rows of GPT-2's 50,257):
 * the chunk stays in cache-friendly reach and the peak small. On WebGPU 256 MiB (1,280 rows): a
 * chunk's matmuls are the LM head's whole cost, and at 333 rows dh = dlogits·W (K = V) ran at
 * 16 TFLOP/s on the H200 (12 chunks, 19.5 ms of a 114 ms GPT-2 LoRA step; its logits 11.8 ms):
 * too few output tiles for the GPU, so split-K. PyTorch holds all [N, V] logits (823 MB there).
 */
const CHUNK_BYTES = { cpu: 2 ** 26, webgpu: 2 ** 28 } as const;

/**
 * The default chunk of `v`-wide logits rows for `n` rows on `hidden`'s device: the rows split
 * evenly into as few chunks as the byte budget allows (4 × 1,024 rather than 3 × 1,280 + 256 at
 * GPT-2's 8 × 512), a multiple of 64 rows where that stays within it.
 */
function defaultChunk(hidden: Tensor, v: number, n: number): number {
  const bytes = Math.min(CHUNK_BYTES[hidden.device], getBackend(hidden.device).maxStorageBytes);
  const most = Math.max(1, Math.floor(bytes / 4 / v));
  if (n <= most) return Math.max(1, n);
  const even = Math.ceil(n / Math.ceil(n / most));
  const aligned = Math.ceil(even / 64) * 64;
  return aligned <= most ? aligned : even;
}

function resolve(op: string, options: FusedCrossEntropyOptions): CrossEntropyAttrs {
  const ignoreIndex = options.ignoreIndex ?? -100;
  const labelSmoothing = options.labelSmoothing ?? 0;
  const reduction = options.reduction ?? 'mean';
  if (!Number.isInteger(ignoreIndex))
    throw new OpError(op, `ignoreIndex must be an integer, got ${ignoreIndex}`);
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1))
    throw new OpError(op, `labelSmoothing must be in [0, 1], got ${labelSmoothing}`);
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none')
    throw new OpError(op, `reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`);
  return { ignoreIndex, labelSmoothing, reduction };
}

function checkLabels(op: string, labels: Tensor, n: number): void {
  if (labels.dtype !== 'int32' || labels.rank !== 1 || labels.shape[0] !== n) {
    throw new OpError(
      op,
      `labels must be int32 [${n}] (class indices), got ${labels.dtype} ${fmtShape(labels.shape)}`,
    );
  }
}

/** Runs the row kernel over a contiguous [rows, V] float32 tensor; with `writeGrad` it becomes the gradient. */
function rowsKernel(op: string, x: Tensor, labels: Tensor, a: CrossEntropyAttrs, writeGrad: boolean): Tensor {
  const [rows, cols] = x.shape;
  const params: CrossEntropyRowsParams = {
    ignoreIndex: a.ignoreIndex,
    labelSmoothing: a.labelSmoothing,
    writeGrad,
  };
  const xv = viewAs(x, x.shape, x.strides);
  const lv = viewAs(labels, labels.shape, labels.strides);
  return wrap(kernel(op, x, 'crossEntropyRows')(xv, lv, rows, cols, params), [rows]);
}

/** The reduced loss from per-row losses, and the factor the summed gradients take ('mean': 1/N_valid). */
function reduceRows(
  lossRows: Tensor,
  labels: Tensor,
  a: CrossEntropyAttrs,
): { loss: Tensor; scale: Tensor | null } {
  if (a.reduction === 'none') return { loss: lossRows, scale: null };
  const total = sum(lossRows);
  if (a.reduction === 'sum') return { loss: total, scale: null };
  // N_valid stays on the device (no host read); 0/0 gives PyTorch's NaN when every label is ignored
  const valid = cast(sum(ne(labels, a.ignoreIndex)), 'float32');
  // the gradients of ignored rows are exact zeros: 1/max(N_valid, 1) keeps them 0 instead of 0·∞
  return { loss: div(total, valid), scale: div(1, maximum(valid, 1)) };
}

/**
 * Cross-entropy of logits [N, V] against int32 class indices [N], fused into one row kernel
 * (logsumexp, the loss and, when recorded, the gradient softmax − target in one pass) instead of
 * logSoftmax, gather and the smoothing sum. `F.crossEntropy` calls it for this case. When the op
 * is recorded, the gradient [N, V] is computed in the forward and saved (it replaces the saved
 * log-probabilities of the composite, so the memory is the same). A label outside [0, V) that is
 * not `ignoreIndex` (a negative one included) is an error naming the label: thrown by the op on
 * the CPU, at the next read-back on WebGPU (labels are never read on the host there).
 *
 * @example
 * const logits = lr.tensor([[2, 0], [0, 2]]);
 * lr.rowCrossEntropy(logits, lr.tensor([0, 1], { dtype: 'int32' })); // 0.126928 (log(1 + e^-2))
 */
export function rowCrossEntropy(
  logits: Tensor,
  labels: Tensor,
  options: FusedCrossEntropyOptions = {},
): Tensor {
  const op = 'rowCrossEntropy';
  const a = resolve(op, options);
  if (logits.dtype !== 'float32' || logits.rank !== 2 || logits.shape[1] === 0) {
    throw new OpError(
      op,
      `expected float32 logits [N, V] with V > 0, got ${logits.dtype} ${fmtShape(logits.shape)}`,
    );
  }
  checkLabels(op, labels, logits.shape[0]);
  const recorded = willRecord([logits]);
  const attrs: OpAttrs['rowCrossEntropy'] = { ...a, grad: null };
  const out = runOp(
    op,
    [logits, labels],
    attrs,
    () =>
      tidy(() => {
        // recorded: a copy of the logits becomes their gradient in place; else the logits are only read
        const x = recorded ? clone(logits) : contiguous(logits);
        const { loss, scale } = reduceRows(rowsKernel(op, x, labels, a, recorded), labels, a);
        if (recorded) attrs.grad = scale ? mul_(x, scale) : x; // x is our copy: scaled in place
        return attrs.grad ? [loss, attrs.grad] : [loss];
      })[0],
  );
  attrs.grad?.dispose();
  return out;
}

/**
 * Fused LM-head cross-entropy: `crossEntropy(hidden · weightᵀ + bias, labels)` computed a chunk
 * of rows at a time, so the [N, V] logits and their gradient never exist in full (the extra
 * memory is about chunkSize·V floats, plus [V, C] for the weight's gradient when it requires
 * grad). When the op is recorded, each chunk's logits are turned in place into their gradient by
 * the row kernel, then multiplied into d(hidden) and accumulated into d(weight) and d(bias) (only
 * for inputs that require grad: a frozen, tied LM head costs no [V, C] gradient); the backward
 * pass only scales these by the incoming gradient. Without recording (eval) no gradient work is
 * done. hidden [N, C] float32, weight [V, C] float32, labels [N] int32, bias [V].
 *
 * NOTE: with reduction 'none' and a weight or bias that requires grad, their gradient needs each
 * row's upstream gradient inside the chunk sum, which the forward does not have: the forward then
 * computes the losses only and keeps the inputs, and the backward pass recomputes the chunks
 * (`linearCrossEntropyBackward`: one more head matmul). d(hidden) alone is per row and is
 * computed in the forward with every reduction.
 *
 * @example
 * const h = lr.randn([6, 4], { requiresGrad: true });
 * const w = lr.randn([10, 4]);
 * const loss = lr.linearCrossEntropy(h, w, lr.tensor([1, 2, 3, -100, 4, 5], { dtype: 'int32' }), { chunkSize: 4 });
 * loss.backward(); // h.grad [6, 4]; w (frozen) gets none
 */
export function linearCrossEntropy(
  hidden: Tensor,
  weight: Tensor,
  labels: Tensor,
  options: LinearCrossEntropyOptions = {},
): Tensor {
  const op = 'linearCrossEntropy';
  const a = resolve(op, options);
  const bias = options.bias ?? null;
  const chunkSize = checkLinear(op, hidden, weight, labels, bias, options.chunkSize);
  const needs = {
    hidden: willRecord([hidden]),
    weight: willRecord([weight]),
    bias: bias !== null && willRecord([bias]),
  };
  const recompute = a.reduction === 'none' && (needs.weight || needs.bias);
  const attrs: OpAttrs['linearCrossEntropy'] = {
    ...a,
    chunkSize,
    dHidden: null,
    dWeight: null,
    dBias: null,
    recompute: recompute ? hidden : null,
    recomputeWeight: recompute ? weight : null,
    recomputeLabels: recompute ? labels : null,
    recomputeBias: recompute ? bias : null,
  };
  const inputs = bias ? [hidden, weight, labels, bias] : [hidden, weight, labels];
  const forwardNeeds = recompute ? NO_GRADS : needs;
  const out = runOp(
    op,
    inputs,
    attrs,
    () =>
      tidy(() => {
        const g = chunkLoop(op, hidden, weight, bias, labels, a, chunkSize, forwardNeeds, null);
        const { loss, scale } = reduceRows(g.lossRows, labels, a);
        // in place: the chunk loop's sums are this op's own, and a lazy product would be a
        // second [V, C] value (memory() counts it) until the backward pass computes it
        const scaled = (t: Tensor | null) => (t && scale ? mul_(t, scale) : t);
        attrs.dHidden = scaled(g.dHidden);
        attrs.dWeight = scaled(g.dWeight);
        attrs.dBias = scaled(g.dBias);
        return [loss, attrs.dHidden, attrs.dWeight, attrs.dBias].filter((t) => t !== null);
      })[0],
  );
  for (const t of [attrs.dHidden, attrs.dWeight, attrs.dBias]) t?.dispose();
  return out;
}

const NO_GRADS: Needs = { hidden: false, weight: false, bias: false };

/** Which gradients the chunk loop forms. */
export interface LinearCrossEntropyNeeds {
  /** d(hidden) [N, C]. */
  hidden: boolean;
  /** d(weight) [V, C]. */
  weight: boolean;
  /** d(bias) [V]. */
  bias: boolean;
}
type Needs = LinearCrossEntropyNeeds;

/** The gradients `linearCrossEntropyBackward` returns (null where not asked for). */
export interface LinearCrossEntropyGrads {
  /** d(hidden) [N, C]. */
  dHidden: Tensor | null;
  /** d(weight) [V, C]. */
  dWeight: Tensor | null;
  /** d(bias) [V]. */
  dBias: Tensor | null;
}

/**
 * The gradients of Σ_i rowGrad[i]·loss_i (reduction 'none' of `linearCrossEntropy`) with respect
 * to hidden, weight and bias, recomputing the logits a chunk at a time: each chunk's gradient
 * rows are scaled by their upstream gradient before they enter d(weight) and d(bias). The
 * gradient rule calls it; it records nothing.
 *
 * @example
 * const g = lr.linearCrossEntropyBackward(h, w, labels, lr.onesLike(labels, { dtype: 'float32' }), {
 *   needs: { hidden: true, weight: true, bias: false },
 * }); // = the gradients of the 'sum' reduction
 */
export function linearCrossEntropyBackward(
  hidden: Tensor,
  weight: Tensor,
  labels: Tensor,
  rowGrad: Tensor,
  options: LinearCrossEntropyOptions & { needs: LinearCrossEntropyNeeds },
): LinearCrossEntropyGrads {
  const op = 'linearCrossEntropyBackward';
  const a = resolve(op, options);
  const bias = options.bias ?? null;
  const chunkSize = checkLinear(op, hidden, weight, labels, bias, options.chunkSize);
  if (rowGrad.dtype !== 'float32' || rowGrad.rank !== 1 || rowGrad.shape[0] !== hidden.shape[0]) {
    throw new OpError(
      op,
      `rowGrad must be float32 [${hidden.shape[0]}], got ${rowGrad.dtype} ${fmtShape(rowGrad.shape)}`,
    );
  }
  return withoutRecording(() =>
    tidy(() => {
      const needs = { ...options.needs, bias: options.needs.bias && bias !== null };
      const g = chunkLoop(op, hidden, weight, bias, labels, a, chunkSize, needs, rowGrad);
      return { dHidden: g.dHidden, dWeight: g.dWeight, dBias: g.dBias };
    }),
  );
}

/** Checks the operands of the linear cross-entropy ops; returns the chunk size. */
function checkLinear(
  op: string,
  hidden: Tensor,
  weight: Tensor,
  labels: Tensor,
  bias: Tensor | null,
  chunk: number | undefined,
): number {
  if (hidden.dtype !== 'float32' || hidden.rank !== 2)
    throw new OpError(op, `hidden must be float32 [N, C], got ${hidden.dtype} ${fmtShape(hidden.shape)}`);
  const [n, c] = hidden.shape;
  if (weight.dtype !== 'float32' || weight.rank !== 2 || weight.shape[1] !== c || weight.shape[0] === 0) {
    throw new OpError(
      op,
      `weight must be float32 [V, ${c}] with V > 0, got ${weight.dtype} ${fmtShape(weight.shape)}`,
    );
  }
  const v = weight.shape[0];
  if (bias && (bias.dtype !== 'float32' || bias.rank !== 1 || bias.shape[0] !== v))
    throw new OpError(op, `bias must be float32 [${v}], got ${bias.dtype} ${fmtShape(bias.shape)}`);
  checkLabels(op, labels, n);
  const chunkSize = chunk ?? defaultChunk(hidden, v, n);
  if (!Number.isInteger(chunkSize) || chunkSize < 1)
    throw new OpError(op, `chunkSize must be a positive integer, got ${chunkSize}`);
  return chunkSize;
}

interface ChunkResult {
  lossRows: Tensor;
  dHidden: Tensor | null;
  dWeight: Tensor | null;
  dBias: Tensor | null;
}

/**
 * The loss of every row and the gradients of Σ_i s_i·loss_i (s = rowScale, or 1), one chunk of
 * rows at a time: logits_c = h_c·Wᵀ (+ b) → row kernel (loss, and logits_c overwritten by
 * d/d logits_c) → rows scaled by s_c → dh_c = dlogits_c·W, dW += dlogits_cᵀ·h_c,
 * db += Σ dlogits_c. Each chunk's logits are freed before the next chunk's exist.
 */
function chunkLoop(
  op: string,
  h: Tensor,
  w: Tensor,
  b: Tensor | null,
  labels: Tensor,
  a: CrossEntropyAttrs,
  chunkSize: number,
  needs: Needs,
  rowScale: Tensor | null,
): ChunkResult {
  const [n, c] = h.shape;
  const v = w.shape[0];
  const grads = needs.hidden || needs.weight || needs.bias;
  const wt = transpose(w, 0, 1); // [C, V], read through its strides
  const losses: Tensor[] = [];
  const dh: Tensor[] = [];
  let dW: Tensor | null = null;
  let dB: Tensor | null = null;
  for (let r0 = 0; r0 < n; r0 += chunkSize) {
    const r1 = Math.min(n, r0 + chunkSize);
    const part = tidy(() => {
      const hc = slice(h, 0, r0, r1);
      const logits = matmul(hc, wt); // [rows, V], fresh memory the kernel may overwrite
      if (b) add_(logits, b);
      const loss = rowsKernel(op, logits, slice(labels, 0, r0, r1), a, grads);
      // logits now holds d(Σ loss_c)/d(logits_c)
      if (grads && rowScale) mul_(logits, unsqueeze(slice(rowScale, 0, r0, r1), 1));
      return {
        loss,
        dh: needs.hidden ? matmul(logits, w) : null,
        dw: needs.weight ? matmul(transpose(logits, 0, 1), hc) : null,
        db: needs.bias ? sum(logits, 0) : null,
      };
    });
    losses.push(part.loss);
    if (part.dh) dh.push(part.dh);
    dW = accumulate(dW, part.dw);
    dB = accumulate(dB, part.db);
  }
  const device = h.device;
  const joined = (parts: Tensor[], empty: number[]) =>
    parts.length === 1 ? parts[0] : parts.length === 0 ? zeros(empty, { device }) : cat(parts, 0);
  return {
    lossRows: joined(losses, [0]),
    dHidden: needs.hidden ? joined(dh, [0, c]) : null,
    dWeight: needs.weight ? (dW ?? zeros([v, c], { device })) : null,
    dBias: needs.bias ? (dB ?? zeros([v], { device })) : null,
  };
}

/** acc + x in place (x freed), so a sum over chunks holds one [V, C] buffer and one chunk's term. */
function accumulate(acc: Tensor | null, x: Tensor | null): Tensor | null {
  if (!x) return acc;
  if (!acc) return x;
  add_(acc, x);
  x.dispose();
  return acc;
}
