import type { NormKind } from '../backend.js';
import { checkInputs, runOp, willRecord } from '../engine/dispatch.js';
import { flatten } from '../engine/lazy.js';
import { getBackend } from '../engine/registry.js';
import { fmtShape, OpError } from '../errors.js';
import { type ElementwiseProgram, loadProgram } from '../expr/program.js';
import { sizeOf } from '../shape.js';
import type { View } from '../storage.js';
import type { Tensor } from '../tensor.js';
import type { NormAttrs } from './attrs.js';
import { kernel, viewAs, wrap } from './util.js';
import { reshape } from './views.js';

/**
 * Layer and RMS normalisation as one op each: one kernel per row set computes the statistics and
 * writes the output (the composition of mean, sub, square, mean, rsqrt, mul takes three reduce
 * and elementwise kernels and reads x three times), and x's elementwise chain (the residual add
 * before a norm) is the kernel's prologue, so `layerNorm(x.add(attn))` is one kernel. The rows'
 * mean and 1/σ are kept for the gradient only when autograd records the op.
 */

/** The normalized shape as an array, checked against the end of x's shape and the affine params. */
function normShape(
  op: string,
  x: Tensor,
  normalizedShape: number | readonly number[],
  params: readonly [string, Tensor | null][],
): number[] {
  const shape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  const k = shape.length;
  const tail = x.shape.slice(x.rank - k);
  if (k === 0 || k > x.rank || tail.some((d, i) => d !== shape[i])) {
    throw new OpError(op, `input ${fmtShape(x.shape)} does not end with normalized shape ${fmtShape(shape)}`);
  }
  for (const [name, p] of params) {
    if (!p) continue;
    p.assertLive(op);
    if (p.shape.length !== k || p.shape.some((d, i) => d !== shape[i])) {
      throw new OpError(
        op,
        `${name} must have the normalized shape ${fmtShape(shape)}, got ${fmtShape(p.shape)}`,
      );
    }
    if (p.dtype !== 'float32') throw new OpError(op, `${name} must be float32, got ${p.dtype}`);
  }
  return shape;
}

/**
 * A program reading `t` as float32 [...rows, cols] (the normalized dims merged; a lazy chain stays
 * fused) over at most `maxInputs` storages.
 */
function rowProgram(
  t: Tensor,
  k: number,
  cols: number,
  maxInputs: number,
): { program: ElementwiseProgram; temp: Tensor | null; storages: number } {
  const temp = k === 1 ? null : reshape(t, [...t.shape.slice(0, t.rank - k), cols]);
  const rows = temp ?? t;
  const program = flatten(loadProgram(rows.lazyView_(), 'float32'), t.device, Math.max(1, maxInputs));
  return { program, temp, storages: new Set(program.inputs.map((v) => v.storage)).size };
}

/** Storage bindings a kernel may have, outputs included (a fused elementwise kernel's inputs and output). */
function bindingLimit(t: Tensor): number {
  return getBackend(t.device).maxFusedInputs + 1;
}

/** A 1-D view of `cols` elements of `t` (computed), with the tensor to dispose after the kernel. */
function vectorView(t: Tensor | null, cols: number): { view: View | null; temp: Tensor | null } {
  if (!t) return { view: null, temp: null };
  const flat = t.rank === 1 ? t : reshape(t, [cols]);
  return { view: viewAs(flat, [cols], flat.strides), temp: flat === t ? null : flat };
}

function disposeAll(ts: readonly (Tensor | null)[]): void {
  for (const t of ts) t?.dispose();
}

function normOp(
  kind: NormKind,
  op: 'layerNorm' | 'rmsNorm',
  x: Tensor,
  normalizedShape: number | readonly number[],
  weight: Tensor | null,
  bias: Tensor | null,
  eps: number,
): Tensor {
  x.assertLive(op);
  const shape = normShape(op, x, normalizedShape, [
    ['weight', weight],
    ['bias', bias],
  ]);
  if (!(eps >= 0)) throw new OpError(op, `eps must be a non-negative number, got ${eps}`);
  const inputs = [x, weight, bias].filter((t): t is Tensor => t !== null);
  const cols = sizeOf(shape);
  const rows = cols === 0 ? 0 : x.size / cols;
  const attrs: NormAttrs = { normalizedShape: shape, eps, weight: weight !== null, bias: bias !== null };
  const stats = willRecord(inputs);
  const y = runOp(op, inputs, attrs, () => {
    // bindings: y, mean, rstd, weight, bias; the rest may be x's chain
    const xp = rowProgram(x, shape.length, cols, bindingLimit(x) - 5);
    const w = vectorView(weight, cols);
    const b = vectorView(bias, cols);
    const out = kernel(op, x, 'norm')(kind, xp.program, rows, cols, w.view, b.view, eps, stats);
    disposeAll([xp.temp, w.temp, b.temp]);
    if (out.rstd) attrs.rstd = wrap(out.rstd, [rows]);
    if (out.mean) attrs.mean = wrap(out.mean, [rows]);
    return wrap(out.y, x.shape);
  });
  // autograd saved its own views of the residuals
  disposeAll([attrs.mean ?? null, attrs.rstd ?? null]);
  return y;
}

/**
 * Layer normalisation over the trailing `normalizedShape` dims, as one fused kernel:
 * `(x − mean) / √(var + eps) · weight + bias` with the biased variance (as PyTorch). x's
 * elementwise chain (a residual add) runs inside the kernel. Always float32.
 *
 * @example
 * lr.layerNorm(lr.tensor([[1, 2, 3]]), [3]); // [[-1.2247, 0, 1.2247]]
 * lr.layerNorm(x.add(attn), [768], w, b); // the residual add is the kernel's prologue
 */
export function layerNorm(
  x: Tensor,
  normalizedShape: number | readonly number[],
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  eps = 1e-5,
): Tensor {
  return normOp('layer', 'layerNorm', x, normalizedShape, weight, bias, eps);
}

/**
 * RMS normalisation (Llama, T5) over the trailing `normalizedShape` dims, as one fused kernel:
 * `x / √(mean(x²) + eps) · weight`. Always float32.
 *
 * @example
 * lr.rmsNorm(lr.tensor([[3, 4]]), [2], null, 0); // [[0.8485, 1.1314]]  (÷ √12.5)
 */
export function rmsNorm(
  x: Tensor,
  normalizedShape: number | readonly number[],
  weight: Tensor | null = null,
  eps = 1e-6,
): Tensor {
  return normOp('rms', 'rmsNorm', x, normalizedShape, weight, null, eps);
}

/** Which gradients `normBackward` computes. */
export interface NormNeeds {
  /** The input's. */
  readonly input: boolean;
  /** The weight's. */
  readonly weight: boolean;
  /** The bias's (layer kind only). */
  readonly bias: boolean;
}

/** What `normBackward` returns: each gradient asked for, shaped like its tensor, else null. */
export interface NormGrads {
  /** Gradient of the input (x's shape). */
  readonly input: Tensor | null;
  /** Gradient of the weight (the normalized shape). */
  readonly weight: Tensor | null;
  /** Gradient of the bias (the normalized shape). */
  readonly bias: Tensor | null;
}

/**
 * The gradients of `layerNorm`/`rmsNorm` from the output's gradient, the input, the weight and
 * the rows' mean (layer kind) and 1/σ that the forward kept: one kernel for the input's gradient
 * (per row) and one for the weight's and bias's (a column reduction over rows). For gradient
 * rules; x and grad may be lazy chains (they are the kernels' prologues). Not recorded.
 *
 * @example
 * const g = lr.normBackward('layer', grad, x, [768], weight, mean, rstd, { input: true, weight: true, bias: true });
 * g.input!.shape; // x.shape
 */
export function normBackward(
  kind: NormKind,
  grad: Tensor,
  x: Tensor,
  normalizedShape: readonly number[],
  weight: Tensor | null,
  mean: Tensor | null,
  rstd: Tensor,
  needs: NormNeeds,
): NormGrads {
  const op = kind === 'layer' ? 'layerNorm' : 'rmsNorm';
  checkInputs(op, [grad, x, rstd, ...(weight ? [weight] : []), ...(mean ? [mean] : [])]);
  const shape = normShape(op, x, normalizedShape, [['weight', weight]]);
  if (grad.shape.length !== x.rank || grad.shape.some((d, i) => d !== x.shape[i])) {
    throw new OpError(op, `gradient ${fmtShape(grad.shape)} does not match the input ${fmtShape(x.shape)}`);
  }
  const cols = sizeOf(shape);
  const rows = cols === 0 ? 0 : x.size / cols;
  for (const [name, s] of [
    ['rstd', rstd],
    ['mean', mean],
  ] as const) {
    if (s && (s.rank !== 1 || s.shape[0] !== rows || s.dtype !== 'float32')) {
      throw new OpError(op, `${name} must be float32 [${rows}], got ${s.dtype} ${fmtShape(s.shape)}`);
    }
  }
  if (kind === 'layer' && !mean) throw new OpError(op, 'the layer kind needs the rows’ mean');
  const k = shape.length;
  // bindings: dx, rstd, mean, weight; the rest are shared by x's chain and grad's
  const free = bindingLimit(x) - 4;
  const xp = rowProgram(x, k, cols, Math.ceil(free / 2));
  const gp = rowProgram(grad, k, cols, free - xp.storages);
  const m = mean && viewAs(mean, [rows], mean.strides);
  const r = viewAs(rstd, [rows], rstd.strides);
  let input: Tensor | null = null;
  let dw: Tensor | null = null;
  let db: Tensor | null = null;
  if (needs.input) {
    const w = vectorView(weight, cols);
    input = wrap(
      kernel(op, x, 'normBackward')(kind, xp.program, gp.program, rows, cols, w.view, m, r),
      x.shape,
    );
    w.temp?.dispose();
  }
  const withBias = needs.bias && kind === 'layer';
  if (needs.weight || withBias) {
    const out = kernel(op, x, 'normParamGrad')(kind, xp.program, gp.program, rows, cols, m, r, withBias);
    const weightGrad = wrap(out.weight, shape);
    if (needs.weight) dw = weightGrad;
    else weightGrad.dispose(); // computed beside the bias's, not asked for
    if (out.bias) db = wrap(out.bias, shape);
  }
  disposeAll([xp.temp, gp.temp]);
  return { input, weight: dw, bias: db };
}
