import { OpError } from '../errors.js';
import { bf16Bits, bf16Value, f16Bits, f16Value } from './half.js';

/**
 * Block-wise absmax quantization of a [rows, cols] float32 matrix, on the host, as the QLoRA paper
 * defines it (Dettmers et al., 2023, section 3). Blocks run along each row (a linear layer's
 * input dimension): block j of row r holds columns [j·blockSize, (j+1)·blockSize), the last block
 * of a row may be short, and each block keeps its absmax c.
 *
 * - `nf4`: a value x becomes the index (0…15) of the `NF4_VALUES` entry nearest to x / c (ties
 *   go to the lower index); it dequantizes to NF4_VALUES[code]·c. The stored scale is c.
 * - `int8`: code = round-half-away-from-zero(127·x / c) clamped to [−127, 127]; it dequantizes to
 *   code·s with the stored scale s = c / 127 (float32). `blockSize = cols` is per-output-channel.
 *
 * An all-zero block has c = 0 and dequantizes to zeros. Double quantization (nf4's scales, or any
 * scales) subtracts their mean μ and quantizes the centred scales again, 8 bits in blocks of 256:
 * step_g = absmax_g(s − μ) / 127, code = round-half-away(127·(s − μ) / absmax_g), and the scale
 * used is code·step_g + μ (float32). The paper's second level is an 8-bit float; this one is an
 * 8-bit integer grid with the same blocks and centring.
 *
 * Packing: row r of the codes takes `wordsPerRow = ⌈cols / perWord⌉` u32 words (stored as int32
 * bit patterns), perWord = 8 nibbles (nf4) or 4 bytes (int8, two's complement); column c of the
 * row lies in word ⌊c / perWord⌋ at bit `bits·(c mod perWord)`. The scale codes of double
 * quantization are one flat row of int8 bytes packed the same way.
 *
 * 16-bit formats (a frozen base kept in half precision, not quantized): `f16` (IEEE binary16)
 * and `bf16` (bfloat16) hold each value's 16-bit pattern (quant/half.ts: nearest, ties to even),
 * two to a word (perWord = 2: column c at bit 16·(c mod 2)), and have no scales: `blockSize` is
 * `cols`, `scales` is an empty float32 array, `steps` null, `scaleMean` 0. A value decodes to
 * itself exactly. A finite float32 that rounds past f16's range is refused.
 */

/** Storage formats of a quantized weight: block-quantized codes `'nf4'`, `'int8'`, or the 16-bit floats `'f16'`, `'bf16'`. */
export type QuantFormat = 'nf4' | 'int8' | 'f16' | 'bf16';

/** The 16-bit float formats (no scales; see this module's header). */
export type HalfFormat = 'f16' | 'bf16';

/**
 * Whether a format is a 16-bit float one (no scales, two values a word).
 *
 * @example
 * lr.isHalfFormat('bf16'); // true
 * lr.isHalfFormat('nf4'); // false
 */
export function isHalfFormat(format: QuantFormat): format is HalfFormat {
  return format === 'f16' || format === 'bf16';
}

/** The formats `quantizeData` accepts, for error messages. */
const FORMATS: readonly QuantFormat[] = ['nf4', 'int8', 'f16', 'bf16'];

/** Checks a format name (naming `op`). */
export function checkFormat(op: string, format: unknown): QuantFormat {
  if (typeof format === 'string' && (FORMATS as readonly string[]).includes(format))
    return format as QuantFormat;
  throw new OpError(
    op,
    `bits must be one of ${FORMATS.map((f) => `'${f}'`).join(', ')}, got '${String(format)}'`,
  );
}

/**
 * The 16 values of the 4-bit NormalFloat data type (NF4), as the QLoRA paper lists them
 * (appendix E): quantiles of N(0, 1) normalised into [−1, 1], 7 negative, an exact 0 and 8
 * positive. A code is an index into this table.
 *
 * @example
 * lr.NF4_VALUES[7]; // 0
 * lr.NF4_VALUES[15]; // 1
 */
export const NF4_VALUES: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** Scales per block of the second level of double quantization. */
export const DOUBLE_QUANT_BLOCK = 256;

/** How to quantize a weight matrix. */
export interface QuantizeOptions {
  /** `'nf4'` (4-bit NormalFloat), `'int8'`, or a 16-bit float `'f16'` / `'bf16'` (no blocks: the options below do not apply). */
  bits: QuantFormat;
  /** Values per absmax block along a row: 64 by default; `'channel'` = one block per row. */
  blockSize?: number | 'channel';
  /** Quantize the block scales again (8 bits, blocks of 256, centred by their mean); false by default. */
  doubleQuant?: boolean;
  /**
   * Double quantization: centre the scales by this value instead of their mean (requantizing a
   * merged weight keeps the offset it had, so every device computes it the same way).
   */
  scaleMean?: number;
}

/** A quantized matrix on the host: the packed words and scales `QuantizedWeight` uploads. */
export interface QuantizedData {
  /** Storage format. */
  readonly format: QuantFormat;
  /** Rows (a linear layer's output features). */
  readonly rows: number;
  /** Columns (input features); blocks run along them. */
  readonly cols: number;
  /** Values per absmax block (the last block of a row may be short). */
  readonly blockSize: number;
  /** Packed codes, `rows · wordsPerRow` u32 words as int32 bit patterns. */
  readonly codes: Int32Array;
  /** Float32 scales [rows · blocksPerRow]; with double quantization, packed int8 scale codes. */
  readonly scales: Float32Array | Int32Array;
  /** Double quantization: step of each 256-scale block (float32), else null. */
  readonly steps: Float32Array | null;
  /** Double quantization: the mean added back to every scale (0 otherwise). */
  readonly scaleMean: number;
}

/** Bits per code of a format. */
export function codeBits(format: QuantFormat): number {
  return format === 'nf4' ? 4 : format === 'int8' ? 8 : 16;
}

/** u32 words per row of codes. */
export function wordsPerRow(format: QuantFormat, cols: number): number {
  return Math.ceil(cols / (32 / codeBits(format)));
}

/** Absmax blocks per row. */
export function blocksPerRow(cols: number, blockSize: number): number {
  return Math.ceil(cols / blockSize);
}

/** The block size options ask for, checked (naming `op`). */
export function resolveBlockSize(op: string, options: QuantizeOptions, cols: number): number {
  if (isHalfFormat(options.bits)) return cols;
  const b = options.blockSize ?? 64;
  if (b === 'channel') return Math.max(1, cols);
  if (!Number.isInteger(b) || b < 1)
    throw new OpError(op, `blockSize must be a positive integer or 'channel', got ${String(b)}`);
  return b;
}

function roundAway(x: number): number {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
}

/** Midpoints between neighbouring NF4 values (exact in float64: sums of two float32 values, halved). */
const NF4_MID = Float64Array.from({ length: 15 }, (_, i) => (NF4_VALUES[i] + NF4_VALUES[i + 1]) / 2);

/**
 * The NF4 code of x / c (float64): the value nearest by |v − NF4[i]|, ties to the lower index
 * (what a scan of all 16 gives). The midpoints find the candidate in 4 steps; its neighbours are
 * compared by the same distances, so rounding next to a midpoint decides as the scan would.
 */
function nf4Code(v: number): number {
  let lo = 0;
  let hi = 15;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v > NF4_MID[mid]) lo = mid + 1;
    else hi = mid;
  }
  let best = lo > 0 ? lo - 1 : lo;
  let bestErr = Math.abs(v - NF4_VALUES[best]);
  for (let i = best + 1; i <= Math.min(15, lo + 1); i++) {
    const e = Math.abs(v - NF4_VALUES[i]);
    if (e < bestErr) {
      best = i;
      bestErr = e;
    }
  }
  return best;
}

function int8Code(x: number, c: number): number {
  return c === 0 ? 0 : Math.max(-127, Math.min(127, roundAway((127 * x) / c)));
}

/** Packs `codes` (row-major [rows, cols], each < 2^bits as two's complement) into u32 words per row. */
export function packCodes(codes: ArrayLike<number>, rows: number, cols: number, bits: number): Int32Array {
  const per = 32 / bits;
  const wpr = Math.ceil(cols / per);
  const mask = (1 << bits) - 1;
  const out = new Int32Array(rows * wpr);
  const shift = Math.log2(per); // per is 8 or 4: word = c >> shift, slot = c & (per − 1)
  for (let r = 0; r < rows; r++) {
    const ow = r * wpr;
    const oc = r * cols;
    for (let c = 0; c < cols; c++)
      out[ow + (c >> shift)] |= (codes[oc + c] & mask) << (bits * (c & (per - 1)));
  }
  return out;
}

/** Code (r, c) of packed words: 0…15 for nf4, −127…127 for int8. */
export function codeAt(words: Int32Array, format: QuantFormat, cols: number, r: number, c: number): number {
  const bits = codeBits(format);
  const per = 32 / bits;
  const word = words[r * Math.ceil(cols / per) + Math.floor(c / per)];
  const shift = bits * (c % per);
  if (bits === 16) return (word >>> shift) & 0xffff;
  return format === 'nf4' ? (word >>> shift) & 15 : (word << (24 - shift)) >> 24;
}

/**
 * Quantizes a row-major [rows, cols] float32 matrix on the host (definitions in this module's
 * header). NaN or infinite values are refused: an absmax block cannot represent them.
 *
 * @example
 * const q = lr.quantizeData(Float32Array.from([0.5, -1, 0.25, 0]), 1, 4, { bits: 'nf4' });
 * q.scales; // Float32Array [1]: the block's absmax
 */
export function quantizeData(
  data: Float32Array,
  rows: number,
  cols: number,
  options: QuantizeOptions,
): QuantizedData {
  const op = 'quantize';
  const format = checkFormat(op, options.bits);
  if (data.length !== rows * cols)
    throw new OpError(op, `expected ${rows}·${cols} = ${rows * cols} values, got ${data.length}`);
  if (isHalfFormat(format)) return halfData(format, encodeHalf(op, format, data, cols), rows, cols);
  const blockSize = resolveBlockSize(op, options, cols);
  const bpr = blocksPerRow(cols, blockSize);
  const codes = new Int32Array(rows * cols);
  const scales = new Float32Array(rows * bpr);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < bpr; b++) {
      const lo = r * cols + b * blockSize;
      const hi = r * cols + Math.min(cols, (b + 1) * blockSize);
      let c = 0;
      for (let i = lo; i < hi; i++) {
        const a = Math.abs(data[i]);
        if (!Number.isFinite(a))
          throw new OpError(
            op,
            `value at [${r}, ${i - r * cols}] is ${data[i]}; only finite weights quantize`,
          );
        if (a > c) c = a;
      }
      if (format === 'nf4') {
        scales[r * bpr + b] = c;
        for (let i = lo; i < hi; i++) codes[i] = nf4Code(c === 0 ? 0 : data[i] / c);
      } else {
        scales[r * bpr + b] = c / 127;
        for (let i = lo; i < hi; i++) codes[i] = int8Code(data[i], c);
      }
    }
  }
  const packed = packCodes(codes, rows, cols, codeBits(format));
  if (!options.doubleQuant)
    return { format, rows, cols, blockSize, codes: packed, scales, steps: null, scaleMean: 0 };
  const { words, steps, mean } = doubleQuantize(scales, options.scaleMean);
  return { format, rows, cols, blockSize, codes: packed, scales: words, steps, scaleMean: mean };
}

function doubleQuantize(
  scales: Float32Array,
  given: number | undefined,
): { words: Int32Array; steps: Float32Array; mean: number } {
  let sum = 0;
  for (const s of scales) sum += s;
  const mean = Math.fround(given ?? (scales.length > 0 ? sum / scales.length : 0));
  const groups = Math.ceil(scales.length / DOUBLE_QUANT_BLOCK);
  const steps = new Float32Array(groups);
  const codes = new Int32Array(scales.length);
  for (let g = 0; g < groups; g++) {
    const lo = g * DOUBLE_QUANT_BLOCK;
    const hi = Math.min(scales.length, lo + DOUBLE_QUANT_BLOCK);
    let a = 0;
    for (let i = lo; i < hi; i++) a = Math.max(a, Math.abs(scales[i] - mean));
    steps[g] = a / 127;
    for (let i = lo; i < hi; i++) codes[i] = int8Code(scales[i] - mean, a);
  }
  return { words: packCodes(codes, 1, scales.length, 8), steps, mean };
}

/**
 * Rounds float32 values to 16-bit patterns (nearest, ties to even); a finite value that becomes
 * ±Infinity in f16 (|x| ≥ 65520) is refused, naming its [row, col].
 */
function encodeHalf(op: string, format: HalfFormat, data: Float32Array, cols: number): Uint16Array {
  const out = new Uint16Array(data.length);
  const enc = format === 'f16' ? f16Bits : bf16Bits;
  for (let i = 0; i < data.length; i++) {
    const h = enc(data[i]);
    if ((h & 0x7fff) === (format === 'f16' ? 0x7c00 : 0x7f80) && Number.isFinite(data[i]))
      throw new OpError(
        op,
        `value at [${Math.floor(i / cols)}, ${i % cols}] is ${data[i]}, beyond ${format}'s range (±${format === 'f16' ? 65504 : '3.39e38'})`,
      );
    out[i] = h;
  }
  return out;
}

/**
 * Host data of a 16-bit weight from its bit patterns (row-major [rows, cols], e.g. an F16 or
 * BF16 safetensors tensor's values as they are stored), packed two to a word with no rounding.
 *
 * @example
 * const d = lr.halfData('f16', Uint16Array.from([0x3c00, 0xc000]), 1, 2); // [[1, -2]]
 * d.codes; // Int32Array [0xc0003c00 | 0]
 */
export function halfData(format: HalfFormat, bits: Uint16Array, rows: number, cols: number): QuantizedData {
  if (format !== 'f16' && format !== 'bf16')
    throw new OpError('halfData', `format must be 'f16' or 'bf16', got '${String(format)}'`);
  if (bits.length !== rows * cols)
    throw new OpError('halfData', `expected ${rows}·${cols} = ${rows * cols} values, got ${bits.length}`);
  const wpr = Math.ceil(cols / 2);
  const codes = new Int32Array(rows * wpr);
  if (cols % 2 === 0) {
    // rows of whole words: the little-endian u16 pairs are the words
    new Uint16Array(codes.buffer).set(bits);
  } else {
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) codes[r * wpr + (c >> 1)] |= bits[r * cols + c] << (16 * (c & 1));
  }
  return {
    format,
    rows,
    cols,
    blockSize: cols,
    codes,
    scales: new Float32Array(0),
    steps: null,
    scaleMean: 0,
  };
}

/** The float32 scale of block i as the kernels use it (double quantization undone). */
export function scaleAt(q: QuantizedData, i: number): number {
  if (!q.steps) return (q.scales as Float32Array)[i];
  const code = codeAt(q.scales as Int32Array, 'int8', q.rows * blocksPerRow(q.cols, q.blockSize), 0, i);
  return Math.fround(Math.fround(code * q.steps[Math.floor(i / DOUBLE_QUANT_BLOCK)]) + q.scaleMean);
}

/**
 * Dequantizes host data back to a row-major [rows, cols] float32 matrix (code value × block scale).
 *
 * @example
 * const q = lr.quantizeData(Float32Array.from([0.5, -1, 0.25, 0]), 1, 4, { bits: 'int8' });
 * lr.dequantizeData(q); // ≈ [0.5, -1, 0.25, 0] (steps of 1/127)
 */
export function dequantizeData(q: QuantizedData): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  if (isHalfFormat(q.format)) {
    const dec = q.format === 'f16' ? f16Value : bf16Value;
    for (let r = 0; r < q.rows; r++)
      for (let c = 0; c < q.cols; c++) out[r * q.cols + c] = dec(codeAt(q.codes, q.format, q.cols, r, c));
    return out;
  }
  const bpr = blocksPerRow(q.cols, q.blockSize);
  for (let r = 0; r < q.rows; r++) {
    for (let c = 0; c < q.cols; c++) {
      const code = codeAt(q.codes, q.format, q.cols, r, c);
      const v = q.format === 'nf4' ? NF4_VALUES[code] : code;
      out[r * q.cols + c] = v * scaleAt(q, r * bpr + Math.floor(c / q.blockSize));
    }
  }
  return out;
}
