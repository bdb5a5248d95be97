import { loadProgram } from '../../expr/program.js';
import { contiguousStrides, sizeOf } from '../../shape.js';
import { Storage, type View } from '../../storage.js';
import { INDEX_OPS, type IndexOp, type WebGPUContext } from './context.js';
import { elementwise } from './elementwise.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { coalesce, linearIndex, MAIN_ARGS, metaStruct, u, unravel, WG, WGSL_TYPE } from './wgsl.js';

/**
 * Index kernels. Out-of-range indices are not clamped: the first one is recorded in the context's
 * error-flag buffer and reported (as the CPU's OpError) at the next read-back; the element reads 0
 * or the addition is skipped.
 */
const CHECK = /* wgsl */ `
fn bad_index(v: i32, size: u32) {
  if (atomicAdd(&err[0], 1u) == 0u) {
    atomicStore(&err[1], CODE);
    atomicStore(&err[2], bitcast<u32>(v));
    atomicStore(&err[3], size);
  }
}
fn wrap_index(v: i32, size: u32) -> i32 {
  if (v < 0 || v >= i32(size)) { bad_index(v, size); return -1; }
  return v;
}`;

function check(op: IndexOp): string {
  return CHECK.replace('CODE', `${INDEX_OPS.indexOf(op) + 1}u`);
}

/** out[i] = x[… index[i] at `dim` …] over `shape` (index is read as a view of that shape). */
function gatherLike(
  c: WebGPUContext,
  op: IndexOp,
  x: View,
  dim: number,
  index: View,
  shape: readonly number[],
  scratch?: GPUBuffer,
): Storage {
  const dt = x.storage.dtype;
  const n = sizeOf(shape);
  // into a scratch buffer when only the index check matters (an uncounted storage wraps it)
  const out = scratch ? new Storage('webgpu', dt, n, n * 4, scratch) : c.allocate(op, dt, n);
  if (n === 0) return out;
  const xStrides = x.strides.map((st, d) => (d === dim ? 0 : st));
  const co = coalesce(shape, [index.strides, xStrides]);
  const r = co.shape.length;
  // words: n, xOffset, indexOffset, dimSize, dimStride, shape[r], indexStrides[r], xStrides[r]
  const words = new Uint32Array(5 + 3 * r);
  const ints = new Int32Array(words.buffer);
  words.set([n, x.offset, index.offset, x.shape[dim]]);
  ints[4] = x.strides[dim];
  for (let d = 0; d < r; d++) {
    words[5 + d] = co.shape[d];
    ints[5 + r + d] = co.strides[0][d];
    ints[5 + 2 * r + d] = co.strides[1][d];
  }
  const T = WGSL_TYPE[dt];
  const pipeline = c.pipeline(`gather|${op}|${dt}|r${r}`, () => {
    return `${metaStruct(words.length)}
@group(0) @binding(1) var<storage, read_write> y: array<${T}>;
@group(0) @binding(2) var<storage, read> x: array<${T}>;
@group(0) @binding(3) var<storage, read> ix: array<i32>;
@group(0) @binding(4) var<storage, read_write> err: array<atomic<u32>, 4>;
${check(op)}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let idx = ${linearIndex(WG)};
  if (idx >= ${u(0)}) { return; }
  ${unravel('idx', r, 5, ['oi', 'ox'], [`bitcast<i32>(${u(2)})`, `bitcast<i32>(${u(1)})`], [5 + r, 5 + 2 * r])}
  let w = wrap_index(ix[oi], ${u(3)});
  if (w < 0) { y[idx] = ${T}(0); return; }
  y[idx] = x[ox + w * bitcast<i32>(${u(4)})];
}`;
  });
  c.dispatch(
    pipeline,
    words,
    [bindingOf(out), bindingOf(x.storage), bindingOf(index.storage), { buffer: c.errorFlag, size: 16 }],
    c.grid(Math.ceil(n / WG)),
  );
  return out;
}

export const gather: GpuKernel<'gather'> = (c, x, dim, index) => {
  c.check('gather');
  return gatherLike(c, 'gather', x, dim, index, index.shape);
};

export const indexSelect: GpuKernel<'indexSelect'> = (c, x, dim, index) => {
  c.check('indexSelect');
  const rows = index.shape[0];
  if (x.shape.length === 0) {
    // a 0-d input: every index must be 0; the result is x itself
    const xs: View = { storage: x.storage, shape: [1], strides: [0], offset: x.offset };
    // the gather only checks the indices (into a scratch buffer); the result is a copy of x
    const scratch = c.scratch('indexSelect', rows);
    gatherLike(c, 'indexSelect', xs, 0, index, [rows], scratch);
    c.release(scratch);
    return elementwise(c, loadProgram(x));
  }
  const shape = [...x.shape];
  shape[dim] = rows;
  const strides = shape.map((_, d) => (d === dim ? index.strides[0] : 0));
  return gatherLike(c, 'indexSelect', x, dim, { ...index, shape, strides }, shape);
};

/**
 * result = copy(target); for every position of `index` (a view of src's shape restricted to
 * `count` along dim): result[… index at dim …] += src[…]. One invocation per column (all
 * coordinates but `dim`) walks `dim` in order, so sums are deterministic and match the CPU's order.
 */
function scatterLike(
  c: WebGPUContext,
  op: IndexOp,
  target: View,
  dim: number,
  index: View,
  src: View,
  count: number,
): Storage {
  const dt = target.storage.dtype;
  const result = elementwise(c, loadProgram(target));
  const shape = index.shape;
  const columnsShape = shape.map((d, i) => (i === dim ? 1 : d));
  const columns = sizeOf(columnsShape);
  if (columns === 0 || count === 0) return result;
  const outStrides = contiguousStrides(target.shape);
  const co = coalesce(columnsShape, [index.strides, src.strides, outStrides]);
  const r = co.shape.length;
  // words: columns, count, dimSize, indexOff, srcOff, indexDimStride, srcDimStride, outDimStride, shape, strides×3
  const words = new Uint32Array(8 + 4 * r);
  const ints = new Int32Array(words.buffer);
  words.set([columns, count, target.shape[dim], index.offset, src.offset]);
  ints[5] = index.strides[dim];
  ints[6] = src.strides[dim];
  ints[7] = outStrides[dim];
  for (let d = 0; d < r; d++) {
    words[8 + d] = co.shape[d];
    for (let k = 0; k < 3; k++) ints[8 + (k + 1) * r + d] = co.strides[k][d];
  }
  const T = WGSL_TYPE[dt];
  const add = dt === 'bool' ? 'select(0u, 1u, y[oo + w * sdo] != 0u || s != 0u)' : 'y[oo + w * sdo] + s';
  const pipeline = c.pipeline(`scatter|${op}|${dt}|r${r}`, () => {
    return `${metaStruct(words.length)}
@group(0) @binding(1) var<storage, read_write> y: array<${T}>;
@group(0) @binding(2) var<storage, read> ix: array<i32>;
@group(0) @binding(3) var<storage, read> src: array<${T}>;
@group(0) @binding(4) var<storage, read_write> err: array<atomic<u32>, 4>;
${check(op)}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let idx = ${linearIndex(WG)};
  if (idx >= ${u(0)}) { return; }
  ${unravel('idx', r, 8, ['oi', 'os', 'oo'], [`bitcast<i32>(${u(3)})`, `bitcast<i32>(${u(4)})`, '0'], [8 + r, 8 + 2 * r, 8 + 3 * r])}
  let sdi = bitcast<i32>(${u(5)});
  let sds = bitcast<i32>(${u(6)});
  let sdo = bitcast<i32>(${u(7)});
  for (var k: i32 = 0; k < i32(${u(1)}); k++) {
    let w = wrap_index(ix[oi + k * sdi], ${u(2)});
    if (w < 0) { continue; }
    let s = src[os + k * sds];
    y[oo + w * sdo] = ${add};
  }
}`;
  });
  c.dispatch(
    pipeline,
    words,
    [bindingOf(result), bindingOf(index.storage), bindingOf(src.storage), { buffer: c.errorFlag, size: 16 }],
    c.grid(Math.ceil(columns / WG)),
  );
  return result;
}

export const scatterAdd: GpuKernel<'scatterAdd'> = (c, target, dim, index, src) => {
  c.check('scatterAdd');
  return scatterLike(c, 'scatterAdd', target, dim, index, src, index.shape[dim]);
};

export const indexAdd: GpuKernel<'indexAdd'> = (c, target, dim, index, src) => {
  c.check('indexAdd');
  const strides = src.shape.map((_, d) => (d === dim ? index.strides[0] : 0));
  const view: View = { storage: index.storage, shape: src.shape, strides, offset: index.offset };
  return scatterLike(c, 'indexAdd', target, dim, view, src, index.shape[0]);
};
