import type { BinaryOp, KernelTable, UnaryOp } from '../../backend.js';
import type { DType } from '../../dtype.js';
import { releaseStorage } from '../../engine.js';
import { contiguousStrides, sizeOf } from '../../shape.js';
import type { Storage, View } from '../../storage.js';
import { type Binding, ELEMENT_BYTES, type WebGPUContext } from './context.js';
import { ctx } from './state.js';
import { coalesce, linearIndex, MAIN_ARGS, metaStruct, PRELUDE, unravel, WG, WGSL_TYPE } from './wgsl.js';

/** The bound range of a storage: all of its elements (at least one word). */
export function bindingOf(storage: Storage): Binding {
  return {
    buffer: storage.handle as GPUBuffer,
    size: Math.max(ELEMENT_BYTES, storage.size * ELEMENT_BYTES),
  };
}

export interface ElementwiseSpec {
  /** Identifies the expression (with the dtypes, rank and layout it joins the pipeline key). */
  key: string;
  inputs: readonly DType[];
  out: DType;
  /** WGSL expression of the output value from the input values `x0`, `x1`, …. */
  expr: string;
  /** Extra words read by the expression as `P0` (a u32 parameter). */
  param?: number;
}

/**
 * Runs `out[i] = expr(inputs at i)` over `shape`. Inputs are strided views of that shape (stride 0
 * on broadcast dims); the output is a new contiguous storage, or the strided `dst` view (assign).
 */
export function elementwise(
  c: WebGPUContext,
  op: string,
  spec: ElementwiseSpec,
  inputs: readonly View[],
  shape: readonly number[],
  dst?: View,
): Storage {
  c.check(op);
  const n = sizeOf(shape);
  const out = dst ? dst.storage : c.allocate(op, spec.out, n);
  if (n === 0) return out;
  const outStrides = dst ? dst.strides : contiguousStrides(shape);
  const co = coalesce(shape, [outStrides, ...inputs.map((v) => v.strides)]);
  const rank = co.shape.length;
  const k = inputs.length;
  // words: n, param, outOffset, in offsets[k], shape[rank], strides[(k+1) * rank]
  const shapeAt = 3 + k;
  const strideAt = Array.from({ length: k + 1 }, (_, i) => shapeAt + rank + i * rank);
  const words = new Uint32Array(shapeAt + rank * (k + 2));
  words[0] = n;
  words[1] = spec.param ?? 0;
  words[2] = dst ? dst.offset : 0;
  for (let i = 0; i < k; i++) words[3 + i] = inputs[i].offset;
  const ints = new Int32Array(words.buffer);
  for (let d = 0; d < rank; d++) {
    words[shapeAt + d] = co.shape[d];
    for (let j = 0; j <= k; j++) ints[strideAt[j] + d] = co.strides[j][d];
  }
  const key = `ew|${spec.key}|${spec.inputs.join(',')}>${spec.out}|r${rank}|${words.length}`;
  const pipeline = c.pipeline(key, () => {
    const decls = [`@group(0) @binding(1) var<storage, read_write> y: array<${WGSL_TYPE[spec.out]}>;`];
    for (let i = 0; i < k; i++) {
      decls.push(
        `@group(0) @binding(${i + 2}) var<storage, read> in${i}: array<${WGSL_TYPE[spec.inputs[i]]}>;`,
      );
    }
    const names = ['oy', ...inputs.map((_, i) => `o${i}`)];
    const offsets = ['i32(U.v[0].z)', ...inputs.map((_, i) => `bitcast<i32>(${uWord(3 + i)})`)];
    const loads = inputs.map((_, i) => `let x${i} = in${i}[o${i}];`).join('\n  ');
    return `${PRELUDE}
${metaStruct(words.length)}
${decls.join('\n')}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let idx = ${linearIndex(WG)};
  if (idx >= U.v[0].x) { return; }
  let P0 = U.v[0].y;
  ${unravel('idx', rank, shapeAt, names, offsets, strideAt)}
  ${loads}
  y[oy] = ${spec.expr};
}`;
  });
  const bindings = [bindingOf(out), ...inputs.map((v) => bindingOf(v.storage))];
  c.dispatch(pipeline, words, bindings, c.grid(Math.ceil(n / WG)));
  return out;
}

function uWord(i: number): string {
  return `U.v[${i >> 2}].${'xyzw'[i & 3]}`;
}

// ---- unary --------------------------------------------------------------------------------

const UNARY_F: Record<UnaryOp, string> = {
  neg: '-x0',
  abs: 'abs(x0)',
  exp: 'exp(x0)',
  log: 'log(x0)',
  sqrt: 'sqrt(x0)',
  rsqrt: '1.0 / sqrt(x0)',
  tanh: 'tanh_s(x0)',
  sigmoid: 'sigmoid_s(x0)',
  relu: 'select(0.0, x0, !(x0 <= 0.0))',
  geluTanh: '0.5 * x0 * (1.0 + tanh_s(0.7978845608028654 * (x0 + 0.044715 * x0 * x0 * x0)))',
  geluErf: '0.5 * x0 * (1.0 + erf_f(x0 * 0.7071067811865476))',
  silu: 'x0 * sigmoid_s(x0)',
  sign: 'select(sign(x0), x0, is_nan(x0))',
  square: 'x0 * x0',
  reciprocal: '1.0 / x0',
  sin: 'sin(reduce_2pi(x0))',
  cos: 'cos(reduce_2pi(x0))',
  floor: 'floor(x0)',
  ceil: 'ceil(x0)',
  round: 'round(x0)',
  logicalNot: 'select(0u, 1u, !f_nonzero(x0))',
};

const UNARY_I: Partial<Record<UnaryOp, string>> = {
  neg: '-x0',
  abs: 'abs(x0)',
  relu: 'max(x0, 0)',
  sign: 'sign(x0)',
  square: 'x0 * x0',
  floor: 'x0',
  ceil: 'x0',
  round: 'x0',
  logicalNot: 'select(0u, 1u, x0 == 0)',
};

export const unary: KernelTable['unary'] = (op, x, outDtype) => {
  const c = ctx(op);
  const dt = x.storage.dtype;
  let expr: string | undefined;
  if (op === 'logicalNot')
    expr =
      dt === 'float32'
        ? UNARY_F.logicalNot
        : dt === 'int32'
          ? UNARY_I.logicalNot
          : 'select(0u, 1u, x0 == 0u)';
  else if (dt === 'float32') expr = UNARY_F[op];
  else if (dt === 'int32') expr = UNARY_I[op];
  if (!expr) throw new Error(`webgpu: unary '${op}' has no ${dt} kernel`);
  return elementwise(c, op, { key: `u:${op}`, inputs: [dt], out: outDtype, expr }, [x], x.shape);
};

// ---- binary -------------------------------------------------------------------------------

const BINARY_F: Record<BinaryOp, string> = {
  add: 'x0 + x1',
  sub: 'x0 - x1',
  mul: 'x0 * x1',
  div: 'x0 / x1',
  pow: 'pow_f(x0, x1)',
  maximum: 'select(select(x1, x0, x0 > x1), nan_f(), is_nan(x0) || is_nan(x1))',
  minimum: 'select(select(x1, x0, x0 < x1), nan_f(), is_nan(x0) || is_nan(x1))',
  eq: 'select(0u, 1u, x0 == x1 && !is_nan(x0) && !is_nan(x1))',
  ne: 'select(0u, 1u, !(x0 == x1) || is_nan(x0) || is_nan(x1))',
  lt: 'select(0u, 1u, x0 < x1)',
  le: 'select(0u, 1u, x0 <= x1)',
  gt: 'select(0u, 1u, x0 > x1)',
  ge: 'select(0u, 1u, x0 >= x1)',
  logicalAnd: 'select(0u, 1u, f_nonzero(x0) && f_nonzero(x1))',
  logicalOr: 'select(0u, 1u, f_nonzero(x0) || f_nonzero(x1))',
};

/** int32 and bool (u32) share these (integer division never reaches a kernel: div is float). */
const BINARY_I: Record<BinaryOp, string> = {
  add: 'x0 + x1',
  sub: 'x0 - x1',
  mul: 'x0 * x1',
  div: 'x0 / x1',
  pow: 'pow_i(x0, x1)',
  maximum: 'max(x0, x1)',
  minimum: 'min(x0, x1)',
  eq: 'select(0u, 1u, x0 == x1)',
  ne: 'select(0u, 1u, x0 != x1)',
  lt: 'select(0u, 1u, x0 < x1)',
  le: 'select(0u, 1u, x0 <= x1)',
  gt: 'select(0u, 1u, x0 > x1)',
  ge: 'select(0u, 1u, x0 >= x1)',
  logicalAnd: 'select(0u, 1u, x0 != Z && x1 != Z)',
  logicalOr: 'select(0u, 1u, x0 != Z || x1 != Z)',
};

export const binary: KernelTable['binary'] = (op, a, b, outShape, outDtype) => {
  const c = ctx(op);
  const dt = a.storage.dtype;
  let expr: string;
  if (dt === 'float32') expr = BINARY_F[op];
  else if (dt === 'int32') expr = BINARY_I[op].replaceAll('Z', '0');
  else {
    // bool operands reach kernels only for comparisons and logical ops (arithmetic promotes to int32)
    expr = BINARY_I[op].replaceAll('Z', '0u');
    if (op === 'pow') expr = 'pow_i(i32(x0), i32(x1))';
    else if (outDtype === 'int32') expr = `i32(${expr})`;
  }
  return elementwise(c, op, { key: `b:${op}`, inputs: [dt, dt], out: outDtype, expr }, [a, b], outShape);
};

export const where: KernelTable['where'] = (cond, a, b, outShape) => {
  const c = ctx('where');
  const dt = a.storage.dtype;
  return elementwise(
    c,
    'where',
    { key: 'where', inputs: ['bool', dt, dt], out: dt, expr: 'select(x2, x1, x0 != 0u)' },
    [cond, a, b],
    outShape,
  );
};

function castExpr(from: DType, to: DType): string {
  if (from === to) return 'x0';
  if (to === 'bool')
    return from === 'float32'
      ? 'select(0u, 1u, f_nonzero(x0))'
      : `select(0u, 1u, x0 != ${from === 'int32' ? '0' : '0u'})`;
  if (to === 'float32') return 'f32(x0)';
  // to int32
  return from === 'float32' ? 'f2i(x0)' : 'i32(x0)';
}

export const cast: KernelTable['cast'] = (x, dtype) => {
  const c = ctx('cast');
  const from = x.storage.dtype;
  return elementwise(
    c,
    'cast',
    { key: 'cast', inputs: [from], out: dtype, expr: castExpr(from, dtype) },
    [x],
    x.shape,
  );
};

export const copy: KernelTable['copy'] = (x) => {
  const c = ctx('copy');
  const dt = x.storage.dtype;
  return elementwise(c, 'copy', { key: 'copy', inputs: [dt], out: dt, expr: 'x0' }, [x], x.shape);
};

export const fill: KernelTable['fill'] = (size, value, dtype) => {
  const c = ctx('fill');
  const bits = new Uint32Array(1);
  if (dtype === 'float32') new Float32Array(bits.buffer)[0] = value;
  else if (dtype === 'int32') new Int32Array(bits.buffer)[0] = Math.trunc(value);
  else bits[0] = value ? 1 : 0;
  const expr = `bitcast<${WGSL_TYPE[dtype]}>(P0)`;
  return elementwise(c, 'fill', { key: 'fill', inputs: [], out: dtype, expr, param: bits[0] }, [], [size]);
};

export const assign: KernelTable['assign'] = (dst, src) => {
  const c = ctx('assign');
  const dt = dst.storage.dtype;
  let source = src;
  let temp: Storage | null = null;
  if (src.storage === dst.storage) {
    // the same buffer cannot be bound for reading and writing in one dispatch: copy src first
    temp = copy(src);
    source = { storage: temp, shape: src.shape, strides: contiguousStrides(src.shape), offset: 0 };
  }
  elementwise(c, 'assign', { key: 'assign', inputs: [dt], out: dt, expr: 'x0' }, [source], dst.shape, dst);
  if (temp) releaseTemp(temp);
};

/** Frees a scratch storage made inside a kernel (it never reached a tensor). */
export function releaseTemp(s: Storage): void {
  s.refs = 1;
  releaseStorage(s);
}
