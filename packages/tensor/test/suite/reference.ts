/**
 * The reference the op suite compares with: row-major arrays of JS numbers with explicit index
 * math. Nothing here uses the library; every function is the textbook definition, written for
 * clarity rather than speed.
 */

/** A reference tensor: row-major values and a shape. */
export interface Ref {
  shape: number[];
  data: number[];
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The multi-index of the `flat`-th element of `shape` in row-major order. */
export function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = flat % shape[d];
    flat = Math.floor(flat / shape[d]);
  }
  return idx;
}

/** The row-major position of a multi-index. */
export function ravel(idx: readonly number[], shape: readonly number[]): number {
  let flat = 0;
  for (let d = 0; d < shape.length; d++) flat = flat * shape[d] + idx[d];
  return flat;
}

/** A reference of `shape` whose element at idx is fn(idx). */
export function build(shape: readonly number[], fn: (idx: number[]) => number): Ref {
  const data: number[] = [];
  for (let i = 0; i < numel(shape); i++) data.push(fn(unravel(i, shape)));
  return { shape: [...shape], data };
}

/** NumPy broadcasting, written out: align right, a dim of 1 stretches. Null if incompatible. */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] | null {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i - (rank - a.length) >= 0 ? a[i - (rank - a.length)] : 1;
    const db = i - (rank - b.length) >= 0 ? b[i - (rank - b.length)] : 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Element of `r` at an index of a (possibly larger, broadcast) shape. */
export function at(r: Ref, idx: readonly number[]): number {
  const lead = idx.length - r.shape.length;
  const own = r.shape.map((d, i) => (d === 1 ? 0 : idx[lead + i]));
  return r.data[ravel(own, r.shape)];
}

export function map(r: Ref, fn: (x: number) => number): Ref {
  return { shape: [...r.shape], data: r.data.map(fn) };
}

export function zip(a: Ref, b: Ref, fn: (x: number, y: number) => number): Ref {
  const shape = broadcastShape(a.shape, b.shape);
  if (!shape) throw new Error('reference: shapes do not broadcast');
  return build(shape, (idx) => fn(at(a, idx), at(b, idx)));
}

/** Reduction over `dims` (all when empty list means none; pass every dim to reduce all). */
export function reduce(
  r: Ref,
  dims: readonly number[],
  keepdim: boolean,
  init: () => number[],
  step: (acc: number[], x: number, posInReduced: number) => void,
  finish: (acc: number[], count: number) => number,
): Ref {
  const rank = r.shape.length;
  const isReduced = (d: number) => dims.includes(d);
  const outShapeKeep = r.shape.map((d, i) => (isReduced(i) ? 1 : d));
  const reducedShape = r.shape.filter((_, i) => isReduced(i));
  const count = numel(reducedShape);
  const accs: number[][] = [];
  for (let o = 0; o < numel(outShapeKeep); o++) accs.push(init());
  for (let i = 0; i < r.data.length; i++) {
    const idx = unravel(i, r.shape);
    const outIdx = idx.map((v, d) => (isReduced(d) ? 0 : v));
    const redIdx = idx.filter((_, d) => isReduced(d));
    step(accs[ravel(outIdx, outShapeKeep)], r.data[i], ravel(redIdx, reducedShape));
  }
  const data = accs.map((a) => finish(a, count));
  const shape = keepdim ? outShapeKeep : r.shape.filter((_, i) => !isReduced(i));
  return { shape: rank === 0 ? [] : shape, data };
}

export function refSum(r: Ref, dims: readonly number[], keepdim: boolean): Ref {
  return reduce(
    r,
    dims,
    keepdim,
    () => [0],
    (acc, x) => {
      acc[0] += x;
    },
    (acc) => acc[0],
  );
}

export function refMax(r: Ref, dims: readonly number[], keepdim: boolean, sign: 1 | -1): Ref {
  return reduce(
    r,
    dims,
    keepdim,
    () => [Number.NEGATIVE_INFINITY],
    (acc, x) => {
      acc[0] = Math.max(acc[0], sign * x);
    },
    (acc) => sign * acc[0],
  );
}

/** First position (within the reduced dims, row-major) of the maximum (sign 1) or minimum (−1). */
export function refArgMax(r: Ref, dims: readonly number[], keepdim: boolean, sign: 1 | -1): Ref {
  return reduce(
    r,
    dims,
    keepdim,
    () => [Number.NEGATIVE_INFINITY, -1],
    (acc, x, pos) => {
      if (sign * x > acc[0]) {
        acc[0] = sign * x;
        acc[1] = pos;
      }
    },
    (acc) => acc[1],
  );
}

export function refVar(r: Ref, dims: readonly number[], keepdim: boolean, unbiased: boolean): Ref {
  return reduce(
    r,
    dims,
    keepdim,
    () => [],
    (acc, x) => {
      acc.push(x);
    },
    (acc, n) => {
      const mean = acc.reduce((s, x) => s + x, 0) / n;
      const ss = acc.reduce((s, x) => s + (x - mean) * (x - mean), 0);
      return ss / (unbiased ? n - 1 : n);
    },
  );
}

export function refLogSumExp(r: Ref, dims: readonly number[], keepdim: boolean): Ref {
  // the definition, in float64 (inputs are small, so exp cannot overflow)
  return reduce(
    r,
    dims,
    keepdim,
    () => [0],
    (acc, x) => {
      acc[0] += Math.exp(x);
    },
    (acc) => Math.log(acc[0]),
  );
}

/** softmax along `dim`: exp(x) / Σ exp(x) over that dim. */
export function refSoftmax(r: Ref, dim: number): Ref {
  return build(r.shape, (idx) => {
    let s = 0;
    for (let j = 0; j < r.shape[dim]; j++) {
      const other = [...idx];
      other[dim] = j;
      s += Math.exp(r.data[ravel(other, r.shape)]);
    }
    return Math.exp(r.data[ravel(idx, r.shape)]) / s;
  });
}

/** Naive triple loop over (batched, broadcast) matrices, PyTorch's 1-D promotion rules. */
export function refMatmul(a: Ref, b: Ref): Ref {
  const a2: Ref = a.shape.length === 1 ? { shape: [1, a.shape[0]], data: a.data } : a;
  const b2: Ref = b.shape.length === 1 ? { shape: [b.shape[0], 1], data: b.data } : b;
  const m = a2.shape[a2.shape.length - 2];
  const k = a2.shape[a2.shape.length - 1];
  const n = b2.shape[b2.shape.length - 1];
  const batch = broadcastShape(a2.shape.slice(0, -2), b2.shape.slice(0, -2));
  if (!batch) throw new Error('reference: batch dims do not broadcast');
  const out = build([...batch, m, n], (idx) => {
    const bi = idx.slice(0, -2);
    const i = idx[idx.length - 2];
    const j = idx[idx.length - 1];
    let s = 0;
    for (let p = 0; p < k; p++) s += at(a2, [...bi, i, p]) * at(b2, [...bi, p, j]);
    return s;
  });
  const shape = [...batch];
  if (a.shape.length > 1) shape.push(m);
  if (b.shape.length > 1) shape.push(n);
  return { shape, data: out.data };
}

/** erf by its Taylor series (converges for every x; accurate to ~1e-9 for |x| ≤ 4). */
export function erf(x: number): number {
  if (Math.abs(x) > 5) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** Round half to even (banker's rounding), as PyTorch's round. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const frac = x - f;
  if (frac < 0.5) return f;
  if (frac > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** float → int32 conversion: truncation toward zero; NaN and ±inf give 0. */
export function toInt(x: number): number {
  return Number.isFinite(x) ? Math.trunc(x) : 0;
}

/** A small deterministic PRNG (mulberry32) for test data, independent of the library's. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
