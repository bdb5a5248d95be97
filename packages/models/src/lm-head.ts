import { F, type Module, QuantizedEmbedding } from '@lowrank/nn';
import {
  cat,
  full,
  OpError,
  type QuantizedWeight,
  quantizedMatmul,
  type Tensor,
  tidy,
} from '@lowrank/tensor';
import type { KVCache, LMOutput } from './gpt2.js';

/** HF's ignore index for labels. */
export const IGNORE_INDEX = -100;

function checkLabels(op: string, labels: Tensor, b: number, t: number): void {
  if (labels.rank !== 2 || labels.shape[0] !== b || labels.shape[1] !== t) {
    throw new OpError(op, `labels must be [${b}, ${t}] like the logits, got [${labels.shape.join(',')}]`);
  }
}

/**
 * labels [B, T] shifted left by one with IGNORE_INDEX last, flat [B·T]: row t then holds the
 * label t + 1 that position t predicts.
 * NOTE: instead of slicing the logits to T − 1 positions (a copy of B·(T−1)·V floats, and a
 * zero-padded copy again in the backward pass), the labels are shifted and the last position is
 * ignored: the same mean over the same terms.
 */
function shiftedLabels(labels: Tensor): Tensor {
  const [b, t] = labels.shape;
  const pad = full([b, 1], IGNORE_INDEX, { dtype: 'int32', device: labels.device });
  return cat([labels.slice(1, 1, t), pad], 1).reshape(b * t);
}

/**
 * Causal-LM loss as HF computes it: logits at position t predict label t + 1; mean over the
 * labels that are not IGNORE_INDEX.
 *
 * @example
 * const { logits } = model.forward(ids); // ids [B, T]
 * const loss = lmLoss(logits, ids); // logits at t predict ids at t + 1
 */
export function lmLoss(logits: Tensor, labels: Tensor): Tensor {
  const [b, t, v] = logits.shape;
  checkLabels('lmLoss', labels, b, t);
  return tidy(() =>
    F.crossEntropy(logits.reshape(b * t, v), shiftedLabels(labels), { ignoreIndex: IGNORE_INDEX }),
  );
}

/**
 * `lmLoss(hidden · weightᵀ + bias, labels)` without the logits: the final hidden states [B, T, C]
 * go through `F.linearCrossEntropy` with the head's weight [V, C], so the [B, T, V] logits and
 * their gradient never exist in full, and a frozen head (GPT-2's tied embedding under LoRA) gets
 * no [V, C] gradient. Same shift and mean as `lmLoss`.
 *
 * @example
 * const { hidden } = model.transformer.forward(ids);
 * const loss = lmHeadLoss(hidden, model.lmHeadWeight, ids); // = lmLoss(model.forward(ids).logits, ids)
 */
export function lmHeadLoss(
  hidden: Tensor,
  weight: Tensor,
  labels: Tensor,
  options: { bias?: Tensor | null; chunkSize?: number } = {},
): Tensor {
  const [b, t, c] = hidden.shape;
  checkLabels('lmHeadLoss', labels, b, t);
  return tidy(() =>
    F.linearCrossEntropy(hidden.reshape(b * t, c), weight, shiftedLabels(labels), {
      ignoreIndex: IGNORE_INDEX,
      bias: options.bias ?? null,
      chunkSize: options.chunkSize,
    }),
  );
}

/**
 * The output of a forward with labels: the loss (from `lmHeadLoss`), and `logits` as a getter
 * that projects the hidden states on first read (then returns the same tensor). A training step
 * that reads only `loss` never holds [B, T, V] logits; `const { logits, loss } = ...` still works
 * (destructuring reads the getter, at the cost of one head matmul more than before).
 */
export function outputWithLabels(
  op: string,
  hidden: Tensor,
  project: (h: Tensor) => Tensor,
  loss: Tensor,
  present: KVCache | undefined,
): LMOutput {
  let logits: Tensor | null = null;
  const out = { loss } as LMOutput;
  // enumerable, so that a tidy returning the whole output keeps the logits it computes
  Object.defineProperty(out, 'logits', {
    enumerable: true,
    get(): Tensor {
      if (logits) return logits;
      if (hidden.isDisposed) {
        throw new OpError(
          op,
          'the logits of a forward with labels are computed when first read, from the final hidden states, which were disposed since: read `logits` inside the scope of the forward, or call forward without labels and then lmLoss(logits, labels)',
        );
      }
      logits = project(hidden);
      return logits;
    },
  });
  if (present) out.present = present;
  return out;
}

/**
 * The 16-bit (or quantized) table of a tied head, or null when the table is a float32 tensor:
 * a `fromPretrained(…, { dtype: 'f16' })` load makes a tied model's embedding a
 * `QuantizedEmbedding`, and the head then multiplies by the same words (`tiedLogits`), so the
 * table is stored once, in 16 bits.
 *
 * @example
 * quantizedTable(model.model.embed_tokens)?.format; // 'f16' after a 16-bit load, else undefined
 */
export function quantizedTable(table: Module): QuantizedWeight | null {
  return table instanceof QuantizedEmbedding ? table.weight : null;
}

/**
 * Logits of a tied head over a 16-bit table [V, C]: hidden [..., C] · dequant(table)ᵀ → [..., V],
 * decoded inside the matmul kernel (the rows the embedding gathers are the columns read here).
 *
 * @example
 * const logits = tiedLogits(hidden, quantizedTable(model.model.embed_tokens)!); // [B, T, vocab]
 */
export function tiedLogits(hidden: Tensor, table: QuantizedWeight): Tensor {
  return quantizedMatmul(hidden, table);
}

/** The error of `lmHeadWeight` on a model whose tied head is a 16-bit table. */
export function quantizedHeadError(op: string, table: QuantizedWeight, where: string): OpError {
  return new OpError(
    op,
    `the tied head is a ${table.format} QuantizedWeight [${table.shape.join(', ')}], not a float32 tensor: read ${where}.weight (a QuantizedWeight), or load in float32 for a float32 head`,
  );
}
