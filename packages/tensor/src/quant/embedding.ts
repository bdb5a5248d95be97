import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { embedding } from '../ops/indexing.js';
import { reshape } from '../ops/views.js';
import type { Tensor } from '../tensor.js';
import { blocksPerRow, isHalfFormat, wordsPerRow } from './format.js';
import { dequantize, type QuantizedParts, QuantizedWeight } from './weight.js';

/**
 * Embedding lookup in a quantized or 16-bit table w [V, D] (an f16/bf16 `QuantizedWeight`, or
 * nf4/int8 without double quantization) at int32 `ids` of any shape → float32 [...ids.shape, D].
 * The packed words of the selected rows (and their block scales) are gathered by `indexSelect`,
 * and only those rows are decoded (`dequantize`'s kernel): the float32 table never exists. The
 * table is frozen: no gradient flows into it.
 *
 * @example
 * const w = lr.QuantizedWeight.fromData(lr.quantizeData(Float32Array.from([0, 0, 1, 1, 2, 2]), 3, 2, { bits: 'f16' }));
 * lr.quantizedEmbedding(w, lr.tensor([[2, 1]], { dtype: 'int32' })); // [[[2, 2], [1, 1]]]
 */
export function quantizedEmbedding(w: QuantizedParts, ids: Tensor): Tensor {
  const op = 'quantizedEmbedding';
  if (w instanceof QuantizedWeight && w.isDisposed)
    throw new OpError(op, `${w.format} table ${fmtShape(w.shape)} was disposed`);
  if (w.steps)
    throw new OpError(
      op,
      `a double-quantized ${w.format} table ${fmtShape(w.shape)} cannot be gathered by rows (its scales are packed across rows)`,
    );
  const [rows, cols] = w.shape;
  return tidy(() => {
    const flat = reshape(ids, [-1]);
    const n = flat.size;
    const codes = embedding(reshape(w.codes, [rows, wordsPerRow(w.format, cols)]), flat);
    const scales = isHalfFormat(w.format)
      ? w.scales
      : embedding(reshape(w.scales, [rows, blocksPerRow(cols, w.blockSize)]), flat);
    const picked: QuantizedParts = {
      format: w.format,
      shape: [n, cols],
      blockSize: w.blockSize,
      codes: reshape(codes, [-1]),
      scales: reshape(scales, [-1]),
      steps: null,
      scaleMean: w.scaleMean,
    };
    return reshape(dequantize(picked), [...ids.shape, cols]);
  });
}
