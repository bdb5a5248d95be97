import type { KernelTable } from '../../backend.js';
import { evaluate } from './elementwise.js';
import { cpuArray, storageOf } from './storage.js';
import { arrayOf, offsetsOf } from './strided.js';

/**
 * Reduces the `inner` trailing elements of each of `outer` rows (x is [...kept, ...reduced]).
 * Each row is first read into a dense float64 scratch row (through the strides when the view is
 * not contiguous), so the reduction loops themselves are plain array scans. Sums accumulate in
 * float64, which keeps float32 results as close to exact as a float32 can hold.
 */
export const reduce: KernelTable['reduce'] = (op, program, outer, inner, outDtype) => {
  const out = cpuArray(outDtype, outer);
  // a plain view is read where it lies; a fused prologue is evaluated into a dense row-major array
  const plain = program.root.kind === 'load' ? program.inputs[program.root.input] : null;
  const src = plain ? arrayOf(plain) : evaluate(program, null);
  const offs = plain ? offsetsOf(plain) : null;
  const x = { offset: plain ? plain.offset : 0 };
  if (!offs && op === 'sum' && src instanceof Float32Array) {
    // the hot case (losses, means, layer norms) scans the float32 storage directly
    for (let o = 0; o < outer; o++) out[o] = sumContiguous(src, x.offset + o * inner, inner);
    return storageOf(out, outDtype);
  }
  const row = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const start = o * inner;
    if (offs) for (let j = 0; j < inner; j++) row[j] = src[offs[start + j]];
    else {
      const base = x.offset + start;
      for (let j = 0; j < inner; j++) row[j] = src[base + j];
    }
    out[o] = reduceRow(op, row, inner);
  }
  return storageOf(out, outDtype);
};

function sumContiguous(src: Float32Array, start: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let j = 0;
  for (; j + 1 < n; j += 2) {
    s0 += src[start + j];
    s1 += src[start + j + 1];
  }
  if (j < n) s0 += src[start + j];
  return s0 + s1;
}

function reduceRow(op: Parameters<KernelTable['reduce']>[0], row: Float64Array, n: number): number {
  switch (op) {
    case 'sum': {
      let s = 0;
      for (let j = 0; j < n; j++) s += row[j];
      return s;
    }
    case 'prod': {
      let p = 1;
      for (let j = 0; j < n; j++) p *= row[j];
      return p;
    }
    case 'max':
    case 'min': {
      let best = row[0];
      for (let j = 1; j < n; j++) {
        const v = row[j];
        if (Number.isNaN(v)) return v; // NaN propagates, as in PyTorch
        if (op === 'max' ? v > best : v < best) best = v;
      }
      return best;
    }
    case 'argmax':
    case 'argmin': {
      // first occurrence wins; the first NaN counts as the extreme, as in PyTorch
      if (Number.isNaN(row[0])) return 0;
      let best = row[0];
      let bi = 0;
      for (let j = 1; j < n; j++) {
        const v = row[j];
        if (Number.isNaN(v)) return j;
        if (op === 'argmax' ? v > best : v < best) {
          best = v;
          bi = j;
        }
      }
      return bi;
    }
  }
}

/**
 * Row softmax with the composite's arithmetic and roundings (so fused and unfused agree bit for
 * bit): m = max (NaN-propagating), e = f32(exp(x − m)), s = f32(Σ e in float64), y = f32(e / s).
 */
export const softmax: KernelTable['softmax'] = (program, rows, cols) => {
  const plain = program.root.kind === 'load' && program.inputs[0].storage.dtype === 'float32';
  const view = plain ? program.inputs[0] : null;
  const src = view ? arrayOf(view) : evaluate(program, null);
  const offs = view ? offsetsOf(view) : null;
  const base = view ? view.offset : 0;
  const out = cpuArray('float32', rows * cols);
  const e = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    const at = (j: number) => src[offs ? offs[r * cols + j] : base + r * cols + j];
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < cols; j++) {
      const v = at(j);
      if (Number.isNaN(v)) {
        m = v;
        break;
      }
      if (v > m) m = v;
    }
    let s = 0;
    for (let j = 0; j < cols; j++) {
      e[j] = Math.exp(at(j) - m);
      s += e[j];
    }
    const sf = Math.fround(s);
    for (let j = 0; j < cols; j++) out[r * cols + j] = e[j] / sf;
  }
  return storageOf(out, 'float32');
};
