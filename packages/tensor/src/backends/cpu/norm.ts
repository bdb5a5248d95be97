import type { KernelTable, NormKind } from '../../backend.js';
import type { ElementwiseProgram } from '../../expr/program.js';
import type { View } from '../../storage.js';
import { evaluate } from './elementwise.js';
import { cpuArray, storageOf } from './storage.js';
import { arrayOf, offsetsOf } from './strided.js';

/**
 * Layer/RMS normalisation on the CPU: plain loops, every row statistic accumulated in float64
 * (two passes: the mean, then the squared deviations from it), so these kernels are the reference
 * the WebGPU ones are tested against. Inputs are float32 programs of shape [...rows, cols].
 */

/** Element j of row r of a program's values: read where it lies (a plain view) or evaluated. */
type RowReader = (r: number, j: number) => number;

function reader(program: ElementwiseProgram, cols: number): RowReader {
  const view = program.root.kind === 'load' ? program.inputs[program.root.input] : null;
  if (view && view.storage.dtype === 'float32') {
    const src = arrayOf(view);
    const offs = offsetsOf(view);
    if (offs) return (r, j) => src[offs[r * cols + j]];
    const base = view.offset;
    return (r, j) => src[base + r * cols + j];
  }
  const values = evaluate(program, null);
  return (r, j) => values[r * cols + j];
}

/** Element j of a 1-D view (weight, bias, statistics), or `fallback` without one. */
function vector(v: View | null, fallback: number): (j: number) => number {
  if (!v) return () => fallback;
  const src = arrayOf(v);
  const { offset } = v;
  const stride = v.strides[0] ?? 1;
  return (j) => src[offset + j * stride];
}

export const norm: KernelTable['norm'] = (kind, program, rows, cols, weight, bias, eps, stats) => {
  const x = reader(program, cols);
  const w = vector(weight, 1);
  const b = vector(bias, 0);
  // outputs through the CPU allocation hook (the Wasm heap when that backend is installed)
  const y = cpuArray('float32', rows * cols);
  const means = stats && kind === 'layer' ? cpuArray('float32', rows) : null;
  const rstds = stats ? cpuArray('float32', rows) : null;
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    if (kind === 'layer') {
      for (let j = 0; j < cols; j++) mean += x(r, j);
      mean /= cols;
    }
    let ss = 0;
    for (let j = 0; j < cols; j++) {
      const d = x(r, j) - mean;
      ss += d * d;
    }
    const rstd = 1 / Math.sqrt(ss / cols + eps);
    for (let j = 0; j < cols; j++) y[r * cols + j] = (x(r, j) - mean) * rstd * w(j) + b(j);
    if (means) means[r] = mean;
    if (rstds) rstds[r] = rstd;
  }
  return {
    y: storageOf(y, 'float32'),
    mean: means && storageOf(means, 'float32'),
    rstd: rstds && storageOf(rstds, 'float32'),
  };
};

/** x̂ of row r, element j: (x − mean)·rstd, or x·rstd for RMS. */
function normalized(kind: NormKind, x: RowReader, mean: View | null, rstd: View): RowReader {
  const m = vector(kind === 'layer' ? mean : null, 0);
  const s = vector(rstd, 1);
  return (r, j) => (x(r, j) - m(r)) * s(r);
}

export const normBackward: KernelTable['normBackward'] = (
  kind,
  xProgram,
  gradProgram,
  rows,
  cols,
  weight,
  mean,
  rstd,
) => {
  const xhat = normalized(kind, reader(xProgram, cols), mean, rstd);
  const g = reader(gradProgram, cols);
  const w = vector(weight, 1);
  const s = vector(rstd, 1);
  const dx = cpuArray('float32', rows * cols);
  for (let r = 0; r < rows; r++) {
    let sumG = 0;
    let sumGX = 0;
    for (let j = 0; j < cols; j++) {
      const gw = g(r, j) * w(j);
      sumG += gw;
      sumGX += gw * xhat(r, j);
    }
    const a = kind === 'layer' ? sumG / cols : 0;
    const c = sumGX / cols;
    const rs = s(r);
    for (let j = 0; j < cols; j++) dx[r * cols + j] = rs * (g(r, j) * w(j) - a - xhat(r, j) * c);
  }
  return storageOf(dx, 'float32');
};

export const normParamGrad: KernelTable['normParamGrad'] = (
  kind,
  xProgram,
  gradProgram,
  rows,
  cols,
  mean,
  rstd,
  bias,
) => {
  const xhat = normalized(kind, reader(xProgram, cols), mean, rstd);
  const g = reader(gradProgram, cols);
  const dw = new Float64Array(cols);
  const db = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const gv = g(r, j);
      dw[j] += gv * xhat(r, j);
      db[j] += gv;
    }
  }
  const rounded = (sums: Float64Array) => {
    const out = cpuArray('float32', cols);
    out.set(sums);
    return storageOf(out, 'float32');
  };
  return { weight: rounded(dw), bias: bias ? rounded(db) : null };
};
