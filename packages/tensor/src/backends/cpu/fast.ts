import type { BinaryOp, UnaryOp } from '../../backend.js';
import type { View } from '../../storage.js';

/**
 * Float32 fast paths of the elementwise kernels. V8 specialises an array access site to the typed
 * array kinds it has seen: the generic loops in elementwise.ts see Float32Array, Int32Array and
 * Uint8Array and go megamorphic, while each loop here only ever sees Float32Array (and Uint8Array
 * for bool outputs/conditions) and compiles to plain loads and stores. Every op gets its own loop
 * (a shared loop calling `f(x)` would make that call site megamorphic instead).
 *
 * Strided operands are handled when the broadcast output shape coalesces to at most two levels
 * (`outer` rows of `inner` elements) with each operand read at `base + o·outer + j·inner`
 * strides: contiguous tensors, a broadcast row vector (bias), a broadcast column (softmax's
 * max/sum), a scalar, or a transposed 2-D operand.
 */

/** Two-level geometry of an operand: element (o, j) sits at `base + o·so + j·si`. */
export interface Geometry {
  outer: number;
  inner: number;
  /** base, outer stride, inner stride per operand */
  op: number[];
}

/**
 * Coalesces the output shape and the operands' strides into at most two levels, or null when the
 * view needs more (the caller uses the generic loops).
 */
export function geometry(shape: readonly number[], views: readonly View[]): Geometry | null {
  const k = views.length;
  const dims: number[] = [];
  const strides: number[][] = views.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const n = dims.length;
    if (n > 0) {
      // merge d into the previous kept dim when every operand steps through both as one
      let mergeable = true;
      for (let i = 0; i < k && mergeable; i++) {
        const s = views[i].strides[d];
        if (strides[i][n - 1] !== s * shape[d]) mergeable = false;
      }
      if (mergeable) {
        dims[n - 1] *= shape[d];
        for (let i = 0; i < k; i++) strides[i][n - 1] = views[i].strides[d];
        continue;
      }
    }
    dims.push(shape[d]);
    for (let i = 0; i < k; i++) strides[i].push(views[i].strides[d]);
  }
  if (dims.length > 2) return null;
  const op: number[] = [];
  if (dims.length === 2) {
    for (let i = 0; i < k; i++) op.push(views[i].offset, strides[i][0], strides[i][1]);
    return { outer: dims[0], inner: dims[1], op };
  }
  for (let i = 0; i < k; i++) op.push(views[i].offset, 0, dims.length === 1 ? strides[i][0] : 0);
  return { outer: 1, inner: dims.length === 1 ? dims[0] : 1, op };
}

// ---- unary (contiguous float32 → float32) ------------------------------------------------------

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** Contiguous float32 unary op into `out`; false when the op has no fast loop. */
export function unaryF32(op: UnaryOp, x: Float32Array, base: number, out: Float32Array, n: number): boolean {
  switch (op) {
    case 'neg':
      for (let i = 0; i < n; i++) out[i] = -x[base + i];
      return true;
    case 'abs':
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[base + i]);
      return true;
    case 'exp':
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[base + i]);
      return true;
    case 'log':
      for (let i = 0; i < n; i++) out[i] = Math.log(x[base + i]);
      return true;
    case 'sqrt':
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[base + i]);
      return true;
    case 'rsqrt':
      for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[base + i]);
      return true;
    case 'square':
      for (let i = 0; i < n; i++) {
        const v = x[base + i];
        out[i] = v * v;
      }
      return true;
    case 'reciprocal':
      for (let i = 0; i < n; i++) out[i] = 1 / x[base + i];
      return true;
    case 'relu':
      for (let i = 0; i < n; i++) {
        const v = x[base + i];
        out[i] = v > 0 ? v : Number.isNaN(v) ? v : 0; // NaN stays NaN; -0 → 0
      }
      return true;
    case 'tanh':
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[base + i]);
      return true;
    case 'sigmoid':
      for (let i = 0; i < n; i++) {
        const v = x[base + i];
        if (v >= 0) out[i] = 1 / (1 + Math.exp(-v));
        else {
          const e = Math.exp(v);
          out[i] = e / (1 + e);
        }
      }
      return true;
    case 'silu':
      for (let i = 0; i < n; i++) {
        const v = x[base + i];
        if (v >= 0) out[i] = v / (1 + Math.exp(-v));
        else {
          const e = Math.exp(v);
          out[i] = (v * e) / (1 + e);
        }
      }
      return true;
    case 'geluTanh':
      for (let i = 0; i < n; i++) {
        const v = x[base + i];
        out[i] = 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));
      }
      return true;
    default:
      return false;
  }
}

// ---- binary (float32 operands, two-level geometry) ---------------------------------------------

/** Float32 binary op with a float32 result; false when the op has no fast loop. */
export function binaryF32(
  op: BinaryOp,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  g: Geometry,
): boolean {
  switch (op) {
    case 'add':
      addF32(a, b, out, g);
      return true;
    case 'sub':
      subF32(a, b, out, g);
      return true;
    case 'mul':
      mulF32(a, b, out, g);
      return true;
    case 'div':
      divF32(a, b, out, g);
      return true;
    case 'maximum':
      maxF32(a, b, out, g);
      return true;
    case 'minimum':
      minF32(a, b, out, g);
      return true;
    default:
      return false;
  }
}

// One function per op (see the file comment). Each walks `outer` rows of `inner` elements.

function addF32(a: Float32Array, b: Float32Array, out: Float32Array, g: Geometry): void {
  const [a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ia = a0 + o * ao;
    let ib = b0 + o * bo;
    if (ai === 1 && bi === 1) {
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] + b[ib + j];
      k += inner;
    } else if (ai === 1 && bi === 0) {
      const vb = b[ib];
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] + vb;
      k += inner;
    } else for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] + b[ib];
  }
}

function subF32(a: Float32Array, b: Float32Array, out: Float32Array, g: Geometry): void {
  const [a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ia = a0 + o * ao;
    let ib = b0 + o * bo;
    if (ai === 1 && bi === 1) {
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] - b[ib + j];
      k += inner;
    } else if (ai === 1 && bi === 0) {
      const vb = b[ib];
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] - vb;
      k += inner;
    } else for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] - b[ib];
  }
}

function mulF32(a: Float32Array, b: Float32Array, out: Float32Array, g: Geometry): void {
  const [a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ia = a0 + o * ao;
    let ib = b0 + o * bo;
    if (ai === 1 && bi === 1) {
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] * b[ib + j];
      k += inner;
    } else if (ai === 1 && bi === 0) {
      const vb = b[ib];
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] * vb;
      k += inner;
    } else for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] * b[ib];
  }
}

function divF32(a: Float32Array, b: Float32Array, out: Float32Array, g: Geometry): void {
  const [a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ia = a0 + o * ao;
    let ib = b0 + o * bo;
    if (ai === 1 && bi === 1) {
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] / b[ib + j];
      k += inner;
    } else if (ai === 1 && bi === 0) {
      const vb = b[ib];
      for (let j = 0; j < inner; j++) out[k + j] = a[ia + j] / vb;
      k += inner;
    } else for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] / b[ib];
  }
}

function maxF32(a: Float32Array, b: Float32Array, out: Float32Array, g: Geometry): void {
  const [a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ia = a0 + o * ao;
    let ib = b0 + o * bo;
    for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = Math.max(a[ia], b[ib]);
  }
}

function minF32(a: Float32Array, b: Float32Array, out: Float32Array, g: Geometry): void {
  const [a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ia = a0 + o * ao;
    let ib = b0 + o * bo;
    for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = Math.min(a[ia], b[ib]);
  }
}

/** Float32 comparison with a bool (Uint8Array) result; false when the op is not a comparison. */
export function compareF32(
  op: BinaryOp,
  a: Float32Array,
  b: Float32Array,
  out: Uint8Array,
  g: Geometry,
): boolean {
  const [a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  switch (op) {
    case 'gt':
      for (let o = 0; o < outer; o++) {
        let ia = a0 + o * ao;
        let ib = b0 + o * bo;
        for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] > b[ib] ? 1 : 0;
      }
      return true;
    case 'lt':
      for (let o = 0; o < outer; o++) {
        let ia = a0 + o * ao;
        let ib = b0 + o * bo;
        for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] < b[ib] ? 1 : 0;
      }
      return true;
    case 'ge':
      for (let o = 0; o < outer; o++) {
        let ia = a0 + o * ao;
        let ib = b0 + o * bo;
        for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] >= b[ib] ? 1 : 0;
      }
      return true;
    case 'le':
      for (let o = 0; o < outer; o++) {
        let ia = a0 + o * ao;
        let ib = b0 + o * bo;
        for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] <= b[ib] ? 1 : 0;
      }
      return true;
    case 'eq':
      for (let o = 0; o < outer; o++) {
        let ia = a0 + o * ao;
        let ib = b0 + o * bo;
        for (let j = 0; j < inner; j++, ia += ai, ib += bi) out[k++] = a[ia] === b[ib] ? 1 : 0;
      }
      return true;
    default:
      return false;
  }
}

/** `out = cond ? a : b` over float32 values with a bool (Uint8Array) condition. */
export function whereF32(
  c: Uint8Array,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  g: Geometry,
): void {
  const [c0, co, ci, a0, ao, ai, b0, bo, bi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ic = c0 + o * co;
    let ia = a0 + o * ao;
    let ib = b0 + o * bo;
    for (let j = 0; j < inner; j++, ic += ci, ia += ai, ib += bi) out[k++] = c[ic] !== 0 ? a[ia] : b[ib];
  }
}

/** Strided float32 view gathered into a contiguous array (copy / contiguous / reshape). */
export function copyF32(x: Float32Array, out: Float32Array, g: Geometry): void {
  const [x0, xo, xi] = g.op;
  const { outer, inner } = g;
  let k = 0;
  for (let o = 0; o < outer; o++) {
    let ix = x0 + o * xo;
    for (let j = 0; j < inner; j++, ix += xi) out[k++] = x[ix];
  }
}
