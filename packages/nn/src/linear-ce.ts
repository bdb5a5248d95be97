import { linearCrossEntropy as fusedLinearCrossEntropy, OpError, type Tensor } from '@lowrank/tensor';
import { composite, fmtShape } from './internal.js';
import type { LossReduction } from './losses.js';

/** Options of `F.linearCrossEntropy`. */
export interface LinearCrossEntropyOptions {
  /** Added to every row of logits ([V]); null or absent: none. */
  bias?: Tensor | null;
  /** Labels equal to this are ignored (no loss, not counted in the mean). Default −100. */
  ignoreIndex?: number;
  /** Mixes the target with the uniform distribution: (1 − ε)·one-hot + ε/V. Default 0. */
  labelSmoothing?: number;
  /** 'mean' (default), 'sum', or 'none' (a loss per label, shaped like `labels`). */
  reduction?: LossReduction;
  /** Rows of logits computed at a time (default: as few even chunks as fit in 64 MiB each on the CPU, 256 MiB on WebGPU). */
  chunkSize?: number;
}

/**
 * `F.crossEntropy(F.linear(hidden, weight, bias), labels, options)` for an LM head, without the
 * logits: hidden [..., C] times weight [V, C] is computed a chunk of rows at a time and turned
 * straight into the loss and, when recorded, the gradients (Liger's fused linear cross-entropy;
 * lowrank's own code). Extra memory ≈ chunkSize·V floats instead of 2–3 copies of [N, V]; the
 * weight's gradient [V, C] is only formed when the weight requires grad (in LoRA the tied GPT-2
 * head is frozen). `labels` are int32 shaped like hidden's leading dims. With reduction 'none'
 * and a weight or bias that requires grad, the backward pass recomputes the chunks (each row's
 * upstream gradient is needed inside the weight's sum): one head matmul more.
 *
 * @example
 * // GPT-2's tied head: logits = h · wteᵀ, never materialised
 * const loss = F.linearCrossEntropy(hidden.reshape(-1, C), wte, labels.reshape(-1), { ignoreIndex: -100 });
 * loss.backward();
 */
export function linearCrossEntropy(
  hidden: Tensor,
  weight: Tensor,
  labels: Tensor,
  options: LinearCrossEntropyOptions = {},
): Tensor {
  const lead = hidden.shape.slice(0, -1);
  if (hidden.rank < 1 || labels.rank !== lead.length || labels.shape.some((d, i) => d !== lead[i])) {
    throw new OpError(
      'linearCrossEntropy',
      `labels must be int32 ${fmtShape(lead)} (hidden's leading dims), got ${labels.dtype} ${fmtShape(labels.shape)} for hidden ${fmtShape(hidden.shape)}`,
    );
  }
  if (hidden.rank === 2) return fusedLinearCrossEntropy(hidden, weight, labels, options);
  return composite([hidden, weight, options.bias], () => {
    const loss = fusedLinearCrossEntropy(
      hidden.reshape(-1, hidden.shape[hidden.rank - 1]),
      weight,
      labels.reshape(-1),
      options,
    );
    return (options.reduction ?? 'mean') === 'none' ? loss.reshape(lead) : loss;
  });
}
