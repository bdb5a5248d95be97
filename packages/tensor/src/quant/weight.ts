import type { QuantView } from '../backend.js';
import { runOp } from '../engine/dispatch.js';
import { type QuantizedBytes, quantizedByFormat, trackQuantized } from '../engine/memory.js';
import { getDefaultDevice } from '../engine/registry.js';
import { keep, tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { kernel, wrap } from '../ops/util.js';
import { reshape } from '../ops/views.js';
import type { Device, Storage } from '../storage.js';
import type { Tensor } from '../tensor.js';
import {
  blocksPerRow,
  checkFormat,
  isHalfFormat,
  type QuantFormat,
  type QuantizedData,
  type QuantizeOptions,
  quantizeData,
  resolveBlockSize,
  wordsPerRow,
} from './format.js';

/**
 * The parts of a quantized matrix that its kernels read: what `QuantizedWeight` holds, and what
 * a gradient rule rebuilds from the tensors it saved.
 */
export interface QuantizedParts {
  /** Storage format. */
  readonly format: QuantFormat;
  /** [rows, cols] of the matrix it stands for. */
  readonly shape: readonly [number, number];
  /** Values per absmax block along a row. */
  readonly blockSize: number;
  /** int32 [rows · wordsPerRow]: packed codes. */
  readonly codes: Tensor;
  /** float32 block scales, or (double quantization) int32 words of their int8 codes. */
  readonly scales: Tensor;
  /** Double quantization: float32 step per 256 scales; else null. */
  readonly steps: Tensor | null;
  /** Double quantization: the scales' mean (0 otherwise). */
  readonly scaleMean: number;
}

/** Bytes held by each storage format across live quantized weights, and what float32 would take. */
export interface QuantizedMemoryInfo {
  /** Live `QuantizedWeight`s. */
  count: number;
  /** Device bytes of their codes and scales. */
  bytes: number;
  /** Bytes the same matrices take as float32. */
  f32Bytes: number;
  /** Per format: count, bytes and float32 bytes. */
  formats: Partial<Record<QuantFormat, QuantizedBytes>>;
}

/**
 * A frozen weight matrix [rows, cols] stored quantized: packed 4-bit NF4 or int8 codes with one
 * absmax scale per block of a row (optionally double-quantized), or 16-bit floats (`f16`,
 * `bf16`: two to a word, half the bytes of float32, decoded exactly), on a device. It is not a
 * tensor: it never requires gradients, and ops read it only through `quantizedMatmul` and
 * `dequantize`, which decode it inside their kernels. `lr.quantizedMemory()` counts the live ones.
 *
 * @example
 * const w = lr.randn([8, 70]);
 * const q = await lr.QuantizedWeight.quantize(w, { bits: 'nf4', blockSize: 64 });
 * q.bytes / q.f32Bytes; // ≈ 0.14
 * const y = lr.quantizedMatmul(lr.randn([2, 70]), q); // [2, 8] = x·dequant(w)ᵀ
 */
export class QuantizedWeight implements QuantizedParts {
  readonly format: QuantFormat;
  readonly shape: readonly [number, number];
  readonly blockSize: number;
  readonly codes: Tensor;
  readonly scales: Tensor;
  readonly steps: Tensor | null;
  readonly scaleMean: number;
  #disposed = false;

  /** Takes ownership of the parts' tensors, kept out of any `tidy` until `dispose()` (see `quantize` / `fromData`). */
  constructor(parts: QuantizedParts) {
    checkParts('QuantizedWeight', parts);
    this.format = parts.format;
    this.shape = [parts.shape[0], parts.shape[1]];
    this.blockSize = parts.blockSize;
    this.codes = parts.codes;
    this.scales = parts.scales;
    this.steps = parts.steps;
    this.scaleMean = parts.scaleMean;
    // owned until dispose(): an enclosing tidy must not free them
    for (const t of [this.codes, this.scales, this.steps]) if (t) keep(t);
    trackQuantized(this);
  }

  /**
   * Quantizes a float32 [rows, cols] tensor (blocks along each row: for a `Linear` weight
   * [out, in], along the input features) onto the tensor's device. Asynchronous: the values are
   * read back to the host, quantized there (`quantizeData`) and uploaded.
   *
   * @example
   * const q = await lr.QuantizedWeight.quantize(lr.randn([4, 64]), { bits: 'int8', blockSize: 'channel' });
   * q.format; // "int8"
   */
  static async quantize(w: Tensor, options: QuantizeOptions): Promise<QuantizedWeight> {
    if (w.dtype !== 'float32' || w.rank !== 2)
      throw new OpError('quantize', `expected a float32 matrix, got ${w.dtype} ${fmtShape(w.shape)}`);
    const data = (await w.data()) as Float32Array;
    return QuantizedWeight.fromData(quantizeData(data, w.shape[0], w.shape[1], options), w.device);
  }

  /**
   * `quantize` without the wait, by the device's `quantize` kernel (what merging an adapter into
   * a quantized base uses). The CPU's kernel is the host definition; a GPU's computes in float32,
   * so a value within rounding of a code boundary may take the neighbouring code. Double
   * quantization off the CPU needs `scaleMean` (the scales' mean would be a value read back).
   * f16/bf16 round alike everywhere (integer arithmetic), except that a finite value past f16's
   * range becomes ±Infinity on a GPU where the CPU refuses it.
   *
   * @example
   * const q = lr.QuantizedWeight.quantizeNow(lr.randn([4, 64]), { bits: 'nf4' });
   * q.shape; // [4, 64]
   */
  static quantizeNow(w: Tensor, options: QuantizeOptions): QuantizedWeight {
    const op = 'quantize';
    if (w.dtype !== 'float32' || w.rank !== 2)
      throw new OpError(op, `expected a float32 matrix, got ${w.dtype} ${fmtShape(w.shape)}`);
    checkFormat(op, options.bits);
    if (isHalfFormat(options.bits) && options.doubleQuant)
      throw new OpError(op, `${options.bits} has no scales to double-quantize`);
    const [rows, cols] = w.shape;
    const blockSize = resolveBlockSize(op, options, cols);
    const mean = options.doubleQuant ? (options.scaleMean ?? null) : null;
    if (options.doubleQuant && mean === null) {
      if (w.device !== 'cpu')
        throw new OpError(
          op,
          `double quantization on ${w.device} needs options.scaleMean (the scales' mean is a value read back: use await QuantizedWeight.quantize)`,
        );
      const data = tidy(() => {
        const v = w.contiguous().view_();
        return (v.storage.handle as Float32Array).slice(v.offset, v.offset + w.size);
      });
      return QuantizedWeight.fromData(quantizeData(data, rows, cols, options), 'cpu');
    }
    const parts = tidy(() => {
      const out = kernel(op, w, 'quantize')(
        w.contiguous().view_(),
        options.bits,
        rows,
        cols,
        blockSize,
        mean,
      );
      const t = (st: Storage) => wrap(st, [st.size]);
      return { codes: t(out.codes), scales: t(out.scales), steps: out.steps ? t(out.steps) : null };
    });
    return new QuantizedWeight({
      format: options.bits,
      shape: [rows, cols],
      blockSize,
      scaleMean: mean ?? 0,
      ...parts,
    });
  }

  /**
   * Uploads host data (from `quantizeData`) to `device` (the default device if omitted).
   *
   * @example
   * const data = lr.quantizeData(new Float32Array(128).fill(0.5), 2, 64, { bits: 'nf4' });
   * const q = lr.QuantizedWeight.fromData(data);
   * q.shape; // [2, 64]
   */
  static fromData(q: QuantizedData, device: Device = getDefaultDevice()): QuantizedWeight {
    const int = (a: Int32Array) => tensor(a, { dtype: 'int32', device });
    return new QuantizedWeight({
      format: q.format,
      shape: [q.rows, q.cols],
      blockSize: q.blockSize,
      codes: int(q.codes),
      scales: q.scales instanceof Int32Array ? int(q.scales) : tensor(q.scales, { device }),
      steps: q.steps ? tensor(q.steps, { device }) : null,
      scaleMean: q.scaleMean,
    });
  }

  /** Rows (output features of a linear layer). */
  get rows(): number {
    return this.shape[0];
  }
  /** Columns (input features). */
  get cols(): number {
    return this.shape[1];
  }
  /** Device of its storages. */
  get device(): Device {
    return this.codes.device;
  }
  /** Whether the scales are double-quantized. */
  get doubleQuant(): boolean {
    return this.steps !== null;
  }
  /** Device bytes of codes and scales. */
  get bytes(): number {
    return [this.codes, this.scales, this.steps].reduce((n, t) => n + (t ? t.size * 4 : 0), 0);
  }
  /** Bytes of the same matrix as float32. */
  get f32Bytes(): number {
    return this.rows * this.cols * 4;
  }
  /** True once disposed (or its codes were, by a module's dispose()). */
  get isDisposed(): boolean {
    return this.#disposed || this.codes.isDisposed;
  }
  /** Always false: a quantized weight is frozen. */
  get requiresGrad(): boolean {
    return false;
  }

  /** Refused: a quantized weight is frozen (train a LoRA adapter on top instead). */
  requiresGrad_(flag = true): this {
    if (flag)
      throw new OpError(
        'requiresGrad_',
        `a quantized ${this.format} weight ${fmtShape(this.shape)} cannot require gradients: it is a frozen base (train LoRA on top, or dequantize() it to a float32 tensor)`,
      );
    return this;
  }

  /** A copy on another device. */
  async to(device: Device): Promise<QuantizedWeight> {
    const move = async (t: Tensor | null) => (t ? t.to(device) : null);
    const [codes, scales, steps] = await Promise.all([move(this.codes), move(this.scales), move(this.steps)]);
    return new QuantizedWeight({ ...this.parts(), codes: codes!, scales: scales!, steps });
  }

  /** The parts, for ops. */
  parts(): QuantizedParts {
    const { format, shape, blockSize, codes, scales, steps, scaleMean } = this;
    return { format, shape, blockSize, codes, scales, steps, scaleMean };
  }

  /** Frees the codes and scales. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.codes.dispose();
    this.scales.dispose();
    this.steps?.dispose();
  }

  toString(): string {
    return `QuantizedWeight(${this.format}, shape=${fmtShape(this.shape)}, blockSize=${this.blockSize}${this.doubleQuant ? ', doubleQuant' : ''}, device=${this.device})`;
  }
}

function checkParts(op: string, p: QuantizedParts): void {
  const [rows, cols] = p.shape;
  const bpr = blocksPerRow(cols, p.blockSize);
  const want = (t: Tensor | null, what: string, dtype: string, size: number) => {
    if (!t || t.dtype !== dtype || t.size !== size)
      throw new OpError(
        op,
        `${what} must be ${dtype} of ${size} elements for ${p.format} ${fmtShape(p.shape)} in blocks of ${p.blockSize}, got ${t ? `${t.dtype} ${fmtShape(t.shape)}` : 'none'}`,
      );
    t.assertLive(op);
  };
  want(p.codes, 'codes', 'int32', rows * wordsPerRow(p.format, cols));
  if (isHalfFormat(p.format)) {
    if (p.blockSize !== cols || p.scaleMean !== 0)
      throw new OpError(
        op,
        `${p.format} has no blocks: blockSize must be cols=${cols} and scaleMean 0, got ${p.blockSize} and ${p.scaleMean}`,
      );
    want(p.scales, 'scales', 'float32', 0);
    if (p.steps) throw new OpError(op, `${p.format} has no scales to double-quantize, but steps were given`);
  } else if (p.steps) {
    want(p.scales, 'scales', 'int32', Math.ceil((rows * bpr) / 4));
    want(p.steps, 'steps', 'float32', Math.ceil((rows * bpr) / 256));
  } else {
    want(p.scales, 'scales', 'float32', rows * bpr);
  }
}

/** The kernels' view of the parts (their storages computed). */
function quantView(p: QuantizedParts): QuantView {
  return {
    format: p.format,
    rows: p.shape[0],
    cols: p.shape[1],
    blockSize: p.blockSize,
    codes: p.codes.view_().storage,
    scales: p.scales.view_().storage,
    steps: p.steps ? p.steps.view_().storage : null,
    scaleMean: p.scaleMean,
  };
}

function partInputs(op: string, p: QuantizedParts): Tensor[] {
  const inputs = [p.codes, p.scales, ...(p.steps ? [p.steps] : [])];
  for (const t of inputs) {
    if (t.requiresGrad)
      throw new OpError(op, 'the quantized weight is frozen, but one of its tensors requires gradients');
    if (t.offset !== 0 || !t.isContiguous())
      throw new OpError(op, 'the quantized weight’s tensors must be whole contiguous tensors');
  }
  return inputs;
}

/** Options of `quantizedMatmul`. */
export interface QuantizedMatmulOptions {
  /** Multiply by dequant(w)ᵀ (true, the default: x [..., cols] → [..., rows], as `F.linear`) or by dequant(w) (x [..., rows] → [..., cols]). */
  transpose?: boolean;
}

/**
 * `x · dequant(w)ᵀ` (or `x · dequant(w)` with `transpose: false`) in one kernel that decodes the
 * quantized weight as it loads it: x [..., K] float32, w a `QuantizedWeight` [N, K] (a linear
 * layer's [out, in]) → [..., N]. Differentiable in x only (d x = g · dequant(w), the same kernel
 * untransposed); the weight is frozen and gets no gradient.
 *
 * @example
 * const q = await lr.QuantizedWeight.quantize(lr.eye(3).mul(2), { bits: 'int8' });
 * lr.quantizedMatmul(lr.tensor([[1, 2, 3]]), q); // [[2, 4, 6]]
 */
export function quantizedMatmul(x: Tensor, w: QuantizedParts, options: QuantizedMatmulOptions = {}): Tensor {
  const op = 'quantizedMatmul';
  const transpose = options.transpose ?? true;
  if (w instanceof QuantizedWeight && w.isDisposed)
    throw new OpError(op, `${w.format} weight ${fmtShape(w.shape)} was disposed`);
  const inputs = partInputs(op, w);
  const [rows, cols] = w.shape;
  const k = transpose ? cols : rows;
  const n = transpose ? rows : cols;
  if (x.dtype !== 'float32') throw new OpError(op, `input must be float32, got ${x.dtype}`);
  if (x.rank < 1 || x.shape[x.rank - 1] !== k)
    throw new OpError(
      op,
      `input's last dim must be ${k} for ${transpose ? 'x·Wᵀ' : 'x·W'} with W ${fmtShape(w.shape)}, got ${fmtShape(x.shape)}`,
    );
  const shape = [...x.shape.slice(0, -1), n];
  const m = x.size / k;
  const attrs: QuantizedMatmulAttrs = {
    format: w.format,
    rows,
    cols,
    blockSize: w.blockSize,
    scaleMean: w.scaleMean,
    doubleQuant: w.steps !== null,
    transpose,
  };
  return runOp(op, [x, ...inputs], attrs, () =>
    tidy(() => {
      const x2 = (x.rank === 2 ? x : reshape(x, [m, k])).view_();
      return wrap(kernel(op, x, 'quantMatmul')(x2, quantView(w), m, transpose), shape);
    }),
  );
}

/**
 * The float32 [rows, cols] matrix a quantized weight stands for (each code's value times its
 * block scale), computed by a kernel on the weight's device.
 *
 * @example
 * const q = await lr.QuantizedWeight.quantize(lr.tensor([[0.5, -1, 0.25, 0]]), { bits: 'nf4' });
 * await lr.dequantize(q).toArray(); // [[0.5626…, -1, 0.2461…, 0]]: the nearest NF4 values
 */
export function dequantize(w: QuantizedParts): Tensor {
  const op = 'dequantize';
  if (w instanceof QuantizedWeight && w.isDisposed)
    throw new OpError(op, `${w.format} weight ${fmtShape(w.shape)} was disposed`);
  const inputs = partInputs(op, w);
  return wrap(kernel(op, inputs[0], 'dequantize')(quantView(w)), [w.shape[0], w.shape[1]]);
}

/** What `quantizedMatmul` records for autograd (its inputs: x, codes, scales, steps?). */
export interface QuantizedMatmulAttrs {
  /** Storage format. */
  format: QuantFormat;
  /** Rows of the weight. */
  rows: number;
  /** Columns of the weight. */
  cols: number;
  /** Values per absmax block. */
  blockSize: number;
  /** Double quantization's scale mean (0 without). */
  scaleMean: number;
  /** Whether `steps` is the last input. */
  doubleQuant: boolean;
  /** x·Wᵀ (true) or x·W. */
  transpose: boolean;
}

/**
 * Device bytes of the live quantized weights, per format, beside what the same matrices take as
 * float32 (`memory()` counts their storages too, as int32/float32 bytes).
 *
 * @example
 * const q = await lr.QuantizedWeight.quantize(lr.randn([64, 64]), { bits: 'nf4' });
 * lr.quantizedMemory().formats.nf4; // { count: 1, bytes: 2560, f32Bytes: 16384 }
 */
export function quantizedMemory(): QuantizedMemoryInfo {
  const info: QuantizedMemoryInfo = { count: 0, bytes: 0, f32Bytes: 0, formats: {} };
  for (const [format, f] of Object.entries(quantizedByFormat())) {
    info.formats[format as QuantFormat] = f;
    info.count += f.count;
    info.bytes += f.bytes;
    info.f32Bytes += f.f32Bytes;
  }
  return info;
}
