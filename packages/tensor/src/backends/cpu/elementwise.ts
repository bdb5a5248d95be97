import type { KernelTable } from '../../backend.js';
import { type DType, typedArrayFor } from '../../dtype.js';
import { isContiguous, sizeOf } from '../../shape.js';
import type { View } from '../../storage.js';
import { binaryF32, compareF32, copyF32, geometry, unaryF32, whereF32 } from './fast.js';
import { BINARY, UNARY } from './math.js';
import { storageOf } from './storage.js';
import { arrayOf, offsetsOf } from './strided.js';

export const unary: KernelTable['unary'] = (op, x, outDtype) => {
  const n = sizeOf(x.shape);
  const out = typedArrayFor(outDtype, n);
  const src = arrayOf(x);
  if (
    src instanceof Float32Array &&
    out instanceof Float32Array &&
    isContiguous(x.shape, x.strides) &&
    unaryF32(op, src, x.offset, out, n)
  )
    return storageOf(out, outDtype);
  const offs = offsetsOf(x);
  const f = UNARY[op];
  const base = x.offset;
  if (offs) for (let i = 0; i < n; i++) out[i] = f(src[offs[i]]);
  else for (let i = 0; i < n; i++) out[i] = f(src[base + i]);
  return storageOf(out, outDtype);
};

export const binary: KernelTable['binary'] = (op, a, b, outShape, outDtype) => {
  const n = sizeOf(outShape);
  const out = typedArrayFor(outDtype, n);
  const sa = arrayOf(a);
  const sb = arrayOf(b);
  if (sa instanceof Float32Array && sb instanceof Float32Array) {
    const g = geometry(outShape, [a, b]);
    if (g) {
      if (out instanceof Float32Array && binaryF32(op, sa, sb, out, g)) return storageOf(out, outDtype);
      if (out instanceof Uint8Array && compareF32(op, sa, sb, out, g)) return storageOf(out, outDtype);
    }
  }
  const oa = offsetsOf(a);
  const ob = offsetsOf(b);
  const f = BINARY[op];
  const ba = a.offset;
  const bb = b.offset;
  if (!oa && !ob) {
    // the common contiguous cases get dedicated loops (no per-element closure call)
    if (op === 'add') for (let i = 0; i < n; i++) out[i] = sa[ba + i] + sb[bb + i];
    else if (op === 'mul') for (let i = 0; i < n; i++) out[i] = sa[ba + i] * sb[bb + i];
    else if (op === 'sub') for (let i = 0; i < n; i++) out[i] = sa[ba + i] - sb[bb + i];
    else for (let i = 0; i < n; i++) out[i] = f(sa[ba + i], sb[bb + i]);
  } else {
    for (let i = 0; i < n; i++) out[i] = f(sa[oa ? oa[i] : ba + i], sb[ob ? ob[i] : bb + i]);
  }
  return storageOf(out, outDtype);
};

export const where: KernelTable['where'] = (cond, a, b, outShape) => {
  const n = sizeOf(outShape);
  const dtype = a.storage.dtype;
  const out = typedArrayFor(dtype, n);
  const sc = arrayOf(cond);
  const sa = arrayOf(a);
  const sb = arrayOf(b);
  if (
    sc instanceof Uint8Array &&
    sa instanceof Float32Array &&
    sb instanceof Float32Array &&
    out instanceof Float32Array
  ) {
    const g = geometry(outShape, [cond, a, b]);
    if (g) {
      whereF32(sc, sa, sb, out, g);
      return storageOf(out, dtype);
    }
  }
  const oc = offsetsOf(cond);
  const oa = offsetsOf(a);
  const ob = offsetsOf(b);
  for (let i = 0; i < n; i++) {
    out[i] = sc[oc ? oc[i] : cond.offset + i] ? sa[oa ? oa[i] : a.offset + i] : sb[ob ? ob[i] : b.offset + i];
  }
  return storageOf(out, dtype);
};

function convertInto(out: ReturnType<typeof typedArrayFor>, x: View, dtype: DType): void {
  const n = out.length;
  const src = arrayOf(x);
  const offs = offsetsOf(x);
  const at = (i: number) => src[offs ? offs[i] : x.offset + i];
  if (dtype === 'bool') for (let i = 0; i < n; i++) out[i] = at(i) !== 0 ? 1 : 0;
  else if (dtype === 'int32')
    for (let i = 0; i < n; i++) out[i] = Number.isFinite(at(i)) ? Math.trunc(at(i)) : 0;
  else for (let i = 0; i < n; i++) out[i] = at(i);
}

export const cast: KernelTable['cast'] = (x, dtype) => {
  const out = typedArrayFor(dtype, sizeOf(x.shape));
  convertInto(out, x, dtype);
  return storageOf(out, dtype);
};

export const copy: KernelTable['copy'] = (x) => {
  const dtype = x.storage.dtype;
  const n = sizeOf(x.shape);
  const src = arrayOf(x);
  if (isContiguous(x.shape, x.strides)) return storageOf(src.slice(x.offset, x.offset + n), dtype);
  if (src instanceof Float32Array) {
    const g = geometry(x.shape, [x]);
    if (g) {
      const out = new Float32Array(n);
      copyF32(src, out, g);
      return storageOf(out, dtype);
    }
  }
  const offs = offsetsOf(x);
  if (!offs) return storageOf(src.slice(x.offset, x.offset + n), dtype);
  const out = typedArrayFor(dtype, n);
  for (let i = 0; i < n; i++) out[i] = src[offs[i]];
  return storageOf(out, dtype);
};

export const fill: KernelTable['fill'] = (size, value, dtype) => {
  const out = typedArrayFor(dtype, size);
  const v = dtype === 'bool' ? (value ? 1 : 0) : value;
  if (v !== 0) out.fill(v);
  return storageOf(out, dtype);
};

export const assign: KernelTable['assign'] = (dst, src) => {
  const n = sizeOf(dst.shape);
  const d = arrayOf(dst);
  const s = arrayOf(src);
  const od = offsetsOf(dst);
  const os = offsetsOf(src);
  if (!od && !os && d !== s) {
    d.set(s.subarray(src.offset, src.offset + n), dst.offset);
    return;
  }
  // read everything first: src and dst may overlap (x.copy_(x.flip()), say)
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = s[os ? os[i] : src.offset + i];
  for (let i = 0; i < n; i++) d[od ? od[i] : dst.offset + i] = values[i];
};
