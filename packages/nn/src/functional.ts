import {
  addmm,
  arange,
  defaultGenerator,
  scaledDotProductAttention as fusedAttention,
  layerNorm as fusedLayerNorm,
  rmsNorm as fusedRmsNorm,
  type Generator,
  matmul,
  OpError,
  rand,
  type Tensor,
  where,
} from '@lowrank/tensor';
import { composite, fmtShape } from './internal.js';

/**
 * Functional forms of the layers (PyTorch's `torch.nn.functional`), composed from tensor ops so
 * autograd differentiates them with no rules of their own. Shapes are noted inline.
 */

export {
  gelu,
  logSoftmax,
  relu,
  sigmoid,
  silu,
  softmax,
  swiglu,
  tanh,
} from '@lowrank/tensor';
export { type LinearCrossEntropyOptions, linearCrossEntropy } from './linear-ce.js';
export { bceWithLogits, binaryCrossEntropyWithLogits, crossEntropy, mse, mseLoss } from './losses.js';

/**
 * y = x·Wᵀ + b (+ residual) with W [out, in] as in PyTorch: x [..., in] → [..., out]. One
 * `lr.addmm` kernel: the bias and the residual are added where the matmul stores its result.
 *
 * @example
 * F.linear(x, weight, bias); // x [B, 3], weight [4, 3], bias [4] → [B, 4]
 * F.linear(h, w, b, { residual: x }); // x + h·wᵀ + b in one kernel
 */
export function linear(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  options: {
    /** Added to the output (its shape [..., out]) in the same kernel: a residual connection. */
    residual?: Tensor | null;
  } = {},
): Tensor {
  if (weight.rank !== 2)
    throw new OpError('linear', `weight must be 2-D [out, in], got ${fmtShape(weight.shape)}`);
  if (x.rank < 1 || x.shape[x.rank - 1] !== weight.shape[1]) {
    throw new OpError(
      'linear',
      `input's last dim must be in_features=${weight.shape[1]}, got input ${fmtShape(x.shape)}`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== weight.shape[0])) {
    throw new OpError('linear', `bias must be [${weight.shape[0]}], got ${fmtShape(bias.shape)}`);
  }
  // one kernel: the bias is added at the matmul's store (Wᵀ is read through its strides)
  return addmm(x, weight.T, { bias, residual: options.residual ?? null });
}

/**
 * Layer normalisation over the trailing `normalizedShape` dims:
 * (x − mean) / √(var + eps) · weight + bias, with the biased variance (as PyTorch). One fused
 * kernel (`lr.layerNorm`): x's elementwise chain, a residual add, runs inside it.
 *
 * @example
 * F.layerNorm(lr.tensor([[1, 2, 3]]), [3]); // [[-1.2247, 0, 1.2247]]
 */
export function layerNorm(
  x: Tensor,
  normalizedShape: readonly number[],
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  eps = 1e-5,
): Tensor {
  return fusedLayerNorm(x, normalizedShape, weight, bias, eps);
}

/**
 * RMS normalisation (Llama, T5): x / √(mean(x²) + eps) · weight over the trailing
 * `normalizedShape` dims. One fused kernel (`lr.rmsNorm`).
 *
 * @example
 * F.rmsNorm(lr.tensor([[3, 4]]), [2], null, 0); // [[0.8485, 1.1314]]  (÷ √12.5)
 */
export function rmsNorm(
  x: Tensor,
  normalizedShape: readonly number[],
  weight: Tensor | null = null,
  eps = 1e-6,
): Tensor {
  return fusedRmsNorm(x, normalizedShape, weight, eps);
}

/** Options of `dropout`. */
export interface DropoutOptions {
  /** Generator the mask is drawn from (default: the global one). */
  generator?: Generator;
}

/**
 * Zeroes each element with probability `p` and scales the rest by 1/(1 − p) while `training`;
 * returns `x` itself otherwise. The mask is computed on the device: element i is kept when
 * `lr.philoxUniform(i, key) ≥ p` for a key drawn from the (seeded) generator (`lr.rand`), so a
 * seed gives the same mask on every backend, and forward and gradient are one fused kernel each.
 *
 * @example
 * F.dropout(lr.ones([4]), 0.5, true, { generator: new lr.Generator(0) }); // values 0 or 2
 * F.dropout(x, 0.5, false); // x itself (evaluation)
 */
export function dropout(x: Tensor, p = 0.5, training = true, options: DropoutOptions = {}): Tensor {
  if (!(p >= 0 && p <= 1)) throw new OpError('dropout', `p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  const scale = p === 1 ? 0 : 1 / (1 - p);
  // the mask is a device draw (lr.rand: Philox under a key from the generator, drawn again at
  // every replay of a compiled step): it is computed inside the multiply's kernel, and again
  // inside the gradient's, with no host array and no upload
  return composite([x], () => {
    const keep = rand(x.shape, { device: x.device, generator: options.generator ?? defaultGenerator() }).ge(
      p,
    );
    return x.mul(where(keep, scale, 0));
  });
}

/**
 * A [L, S] bool mask, true where query i may attend to key j ≤ i (top-left aligned, as PyTorch).
 *
 * @example
 * F.causalMask(2, 2, 'cpu'); // [[true, false], [true, true]]
 */
export function causalMask(l: number, s: number, device: Tensor['device']): Tensor {
  return composite([], () => {
    const i = arange(l, undefined, 1, { device }).reshape([l, 1]);
    const j = arange(s, undefined, 1, { device }).reshape([1, s]);
    return j.le(i);
  });
}

/** Options of `scaledDotProductAttention`. */
export interface AttentionOptions {
  /**
   * bool: true where attention is ALLOWED (PyTorch's scaled_dot_product_attention convention);
   * float: added to the scores. Broadcast to [..., L, S].
   */
  attnMask?: Tensor | null;
  /** Alias of `attnMask`. */
  mask?: Tensor | null;
  /** Apply the causal (lower-triangular, top-left aligned) mask. */
  isCausal?: boolean;
  /** Alias of `isCausal`. */
  causal?: boolean;
  /** Score scale; default 1/√E. */
  scale?: number;
  /** Dropout probability on the attention weights (default 0). */
  dropoutP?: number;
  /** Generator for the dropout mask (default: the global one). */
  generator?: Generator;
  /**
   * Grouped-query attention (PyTorch's name): q [..., H, L, E] with k/v [..., Hkv, S, E],
   * H % Hkv = 0; query head h reads kv head ⌊h / (H/Hkv)⌋.
   */
  enableGqa?: boolean;
}

/**
 * softmax(q·kᵀ·scale + mask)·v. q [..., L, E], k [..., S, E], v [..., S, Ev] → [..., L, Ev].
 * A row with every key masked gives NaN, as in PyTorch. One fused kernel and its fused gradient
 * (`lr.scaledDotProductAttention`: no [L, S] scores stored), dropout included: with
 * `dropoutP > 0` the kernel drops each probability (kept ones scaled by 1/(1 − p)) by a mask it
 * computes from a key drawn from `generator` (`lr.attentionKeep` of batch·heads + head, query
 * row, key column), and the backward regenerates it. `F.attentionWithWeights` composes the ops
 * (it returns the [..., L, S] weights; its dropout is `F.dropout`'s, another mask).
 *
 * @example
 * const q = lr.randn([2, 4, 8]); // [batch, L, E]
 * F.scaledDotProductAttention(q, q, q, { isCausal: true }).shape; // [2, 4, 8]
 */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Tensor {
  return fusedAttention(q, k, v, {
    attnMask: options.attnMask ?? options.mask ?? null,
    isCausal: options.isCausal ?? options.causal,
    scale: options.scale,
    enableGqa: options.enableGqa,
    dropoutP: options.dropoutP,
    generator: options.generator,
  });
}

/**
 * `scaledDotProductAttention` that also returns the weights [..., L, S].
 *
 * @example
 * const q = lr.randn([1, 3, 4]);
 * const { output, weights } = F.attentionWithWeights(q, q, q, { isCausal: true });
 * weights.shape; // [1, 3, 3] (each row sums to 1)
 */
export function attentionWithWeights(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): {
  /** The attention output [..., L, Ev]. */
  output: Tensor;
  /** The attention weights [..., L, S] (after dropout, as used). */
  weights: Tensor;
} {
  if (q.rank < 2 || k.rank < 2 || v.rank < 2) {
    throw new OpError('attention', `q, k, v need at least 2 dims, got ${fmtShape(q.shape)}`);
  }
  const e = q.shape[q.rank - 1];
  if (k.shape[k.rank - 1] !== e || k.shape[k.rank - 2] !== v.shape[v.rank - 2]) {
    throw new OpError(
      'attention',
      `expected q [..., L, E], k [..., S, E], v [..., S, Ev], got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`,
    );
  }
  const l = q.shape[q.rank - 2];
  const s = k.shape[k.rank - 2];
  const scale = options.scale ?? 1 / Math.sqrt(e);
  const mask = options.attnMask ?? options.mask ?? null;
  if (options.enableGqa) {
    // k/v [..., Hkv, S, E] read by H query heads: [..., Hkv, 1, S, E] against q [..., Hkv, H/Hkv, L, E]
    const h = q.shape[q.rank - 3];
    const hkv = k.shape[k.rank - 3];
    if (q.rank < 3 || k.rank !== q.rank || v.rank !== q.rank || !(hkv > 0 && h % hkv === 0)) {
      throw new OpError(
        'attention',
        `enableGqa: expected q [..., H, L, E], k/v [..., Hkv, S, E] with H % Hkv = 0, got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}`,
      );
    }
    const lead = q.shape.slice(0, -3);
    const g = (t: Tensor): Tensor => t.reshape([...t.shape.slice(0, -3), hkv, 1, ...t.shape.slice(-2)]);
    const qg = q.reshape([...lead, hkv, h / hkv, l, e]);
    const m =
      mask && mask.rank >= 3 ? mask.expand([...lead, h, l, s]).reshape([...lead, hkv, h / hkv, l, s]) : mask;
    const r = attentionWithWeights(qg, g(k), g(v), { ...options, enableGqa: false, attnMask: m, mask: null });
    return {
      output: r.output.reshape([...lead, h, l, v.shape[v.rank - 1]]),
      weights: r.weights.reshape([...lead, h, l, s]),
    };
  }
  const causal = options.isCausal ?? options.causal;
  return composite([q, k, v, mask], () => {
    let scores = matmul(q, k.transpose(-2, -1)).mul(scale); // [..., L, S]
    if (causal) scores = where(causalMask(l, s, q.device), scores, Number.NEGATIVE_INFINITY);
    if (mask) {
      scores = mask.dtype === 'bool' ? where(mask, scores, Number.NEGATIVE_INFINITY) : scores.add(mask);
    }
    let weights = scores.softmax(-1);
    if (options.dropoutP)
      weights = dropout(weights, options.dropoutP, true, { generator: options.generator });
    return { output: matmul(weights, v), weights };
  });
}
