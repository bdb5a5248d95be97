import type { KernelTable } from '../../backend.js';
import { loadProgram } from '../../expr/program.js';
import { coalesce, contiguousStrides, sizeOf } from '../../shape.js';
import type { View } from '../../storage.js';
import type { ModuleBuilder } from './assembler.js';
import type { Executor } from './matmul.js';
import { ranges } from './ranges.js';
import type { WasmRuntime } from './runtime.js';

/**
 * `scatter_add_f32` and `scatter_add_i32(out, so0, so1, so2, idx, si0, si1, si2, src, ss0, ss1,
 * ss2, d0, d1, d2)`: for a < d0, b < d1, c < d2 in that (row-major) order,
 * out[a·so0 + idx[a, b, c]·so1 + c·so2] += src[a, b, c]: one float32 (or wrapping int32) add per
 * element, in the order of the TypeScript kernels (backends/cpu/indexing.ts), whose float64 sum
 * of two float32s rounded once to float32 is exactly `f32.add`. So the results are bit-identical
 * to them, duplicate indices included. Strides are in bytes; indices already checked.
 *
 * @example
 * emitScatter(m); // then exports.scatter_add_f32(out, 0, 4, 0, idx, 0, 4, 0, src, 0, 4, 0, 1, n, 1)
 */
export function emitScatter(module: ModuleBuilder): void {
  for (const t of ['f32', 'i32'] as const) {
    const f = module.function(`scatter_add_${t}`, Array<'i32'>(15).fill('i32'), []);
    const [out, so0, so1, so2, idx, si0, si1, si2, src, ss0, ss1, ss2, d0, d1, d2] = Array.from(
      { length: 15 },
      (_, i) => f.param(i),
    );
    const [a, b, c, oa, ia, ib, sa, sb, p] = Array.from({ length: 9 }, () => f.local('i32'));
    f.for(a, 0, d0, 1, () => {
      f.get(out).get(a).get(so0).op('i32.mul', 'i32.add').set(oa);
      f.get(idx).get(a).get(si0).op('i32.mul', 'i32.add').set(ia);
      f.get(src).get(a).get(ss0).op('i32.mul', 'i32.add').set(sa);
      f.for(b, 0, d1, 1, () => {
        f.get(ia).get(b).get(si1).op('i32.mul', 'i32.add').set(ib);
        f.get(sa).get(b).get(ss1).op('i32.mul', 'i32.add').set(sb);
        f.for(c, 0, d2, 1, () => {
          // p = oa + idx[a, b, c]·so1 + c·so2
          f.get(oa).get(ib).get(c).get(si2).op('i32.mul', 'i32.add').mem('i32.load');
          f.get(so1).op('i32.mul', 'i32.add').get(c).get(so2).op('i32.mul', 'i32.add').set(p);
          f.get(p).get(p).mem(`${t}.load`);
          f.get(sb).get(c).get(ss2).op('i32.mul', 'i32.add').mem(`${t}.load`);
          f.op(`${t}.add`).mem(`${t}.store`);
        });
      });
    });
  }
}

// A worker's dispatch costs ≈ 9 µs there and back (table.ts); an add here, with its share of the
// target's copy, 1.4–3 ns on one thread (bench/scatter.ts, indexAdd [4096, 256] into [8192, 256]):
// from 2^16 adds a second thread has well over 9 µs of work.
const MIN_PARALLEL_SCATTER = 2 ** 16;

/**
 * An iteration (the scattered axis `dim` of `shape`) as slices of [d0, d1, d2]: d1 is `dim`, d0
 * and d2 the innermost of the axes before and after it once coalesced; the other axes (those
 * that do not coalesce into d0 or d2) are walked here, one slice each. Offsets and strides are
 * in elements, one per operand (out, index, src).
 */
interface Plan {
  dims: [number, number, number];
  strides: [number, number, number][];
  /** Each slice's element offset per operand (one slice of zeros when all axes coalesce). */
  slices: number[][];
}

function plan(shape: readonly number[], dim: number, strides: readonly (readonly number[])[]): Plan {
  const group = (from: number, to: number) =>
    coalesce(
      shape.slice(from, to),
      strides.map((st) => st.slice(from, to)),
    );
  const outer = group(0, dim);
  const inner = group(dim + 1, shape.length);
  // the innermost axis of each group goes to the kernel; the others are walked below
  const take = (g: typeof outer) => {
    const k = g.shape.length - 1;
    return k < 0
      ? { n: 1, st: strides.map(() => 0), rest: { shape: [], strides: strides.map(() => []) } }
      : {
          n: g.shape[k],
          st: g.strides.map((st) => st[k]),
          rest: { shape: g.shape.slice(0, k), strides: g.strides.map((st) => st.slice(0, k)) },
        };
  };
  const o = take(outer);
  const i = take(inner);
  const restShape = [...o.rest.shape, ...i.rest.shape];
  const restStrides = strides.map((_, k) => [...o.rest.strides[k], ...i.rest.strides[k]]);
  const slices: number[][] = [];
  const pos = new Array<number>(restShape.length).fill(0);
  for (let n = 0; n < sizeOf(restShape); n++) {
    slices.push(restStrides.map((st) => pos.reduce((off, p, d) => off + p * st[d], 0)));
    for (let d = restShape.length - 1; d >= 0; d--) {
      if (++pos[d] < restShape[d]) break;
      pos[d] = 0;
    }
  }
  return {
    dims: [o.n, shape[dim], i.n],
    strides: strides.map((st, k) => [o.st[k], st[dim], i.st[k]] as [number, number, number]),
    slices,
  };
}

/**
 * `scatterAdd` and `indexAdd` on the kernels above, for float32 and int32 of any rank and
 * strides: the target is copied into a new heap storage by `copy` (the table's elementwise
 * kernel), then src is added in, slice by slice where the axes before or after `dim` do not
 * coalesce (each output's adds keep their order: along `dim`, in index order). The TypeScript
 * kernels run for bool, for rank 0, and for a bad index (negative or ≥ the target's size along
 * `dim`), found before anything is allocated, so that the TypeScript kernel raises its own
 * error. Work is split over threads along d0 or d2, never the scattered axis: elements of
 * distinct outer or inner coordinates never add into the same output, so the bits do not depend
 * on the thread count.
 *
 * @example
 * registerKernels('cpu', wasmScatter(rt, exec, elementwise, { scatterAdd, indexAdd }));
 */
export function wasmScatter(
  rt: WasmRuntime,
  exec: Executor,
  copy: KernelTable['elementwise'],
  fallback: Pick<KernelTable, 'scatterAdd' | 'indexAdd'>,
): Pick<KernelTable, 'scatterAdd' | 'indexAdd'> {
  const mem = rt.storages;

  /** Adds src into a copy of target along `dim`, iterating `iter` (index's or src's shape). */
  const add = (
    target: View,
    dim: number,
    index: View,
    idxStrides: readonly number[],
    src: View,
    iter: readonly number[],
  ) => {
    const dtype = target.storage.dtype;
    const out = mem.allocate(dtype, sizeOf(target.shape));
    const outView: View = {
      storage: out,
      shape: target.shape,
      strides: contiguousStrides(target.shape),
      offset: 0,
    };
    copy(loadProgram(target), outView);
    if (sizeOf(iter) === 0) return out;
    const p = plan(iter, dim, [outView.strides, idxStrides, src.strides]);
    const [d0, d1, d2] = p.dims;
    const base = [mem.adoptView(outView), mem.adoptView(index), mem.adoptView(src)];
    const bytes = p.strides.map((st) => st.map((v) => 4 * v));
    // split d0 when it has a row per thread, else d2
    const threads = d0 * d1 * d2 >= MIN_PARALLEL_SCATTER ? exec.threads : 1;
    const alongOuter = d0 >= threads;
    const fn = dtype === 'int32' ? 'scatter_add_i32' : 'scatter_add_f32';
    for (const slice of p.slices) {
      const tasks = ranges(alongOuter ? d0 : d2, threads).map(([from, to]) => {
        const args: number[] = [];
        for (let k = 0; k < 3; k++) {
          args.push(base[k] + 4 * slice[k] + from * bytes[k][alongOuter ? 0 : 2], ...bytes[k]);
        }
        return alongOuter ? [...args, to - from, d1, d2] : [...args, d0, d1, to - from];
      });
      exec.run(fn, tasks);
    }
    return out;
  };

  const takes = (target: View) => target.storage.dtype !== 'bool' && target.shape.length > 0;

  const scatterAdd: KernelTable['scatterAdd'] = (target, dim, index, src) => {
    // a bad index: the TypeScript kernel raises its error
    if (!takes(target) || !indicesInRange(index, target.shape[dim])) {
      return fallback.scatterAdd(target, dim, index, src);
    }
    return add(target, dim, index, index.strides, src, index.shape);
  };

  const indexAdd: KernelTable['indexAdd'] = (target, dim, index, src) => {
    if (!takes(target) || !indicesInRange(index, target.shape[dim])) {
      return fallback.indexAdd(target, dim, index, src);
    }
    // the 1-D index is read at every outer and inner position: stride 0 there
    const idxStrides = src.shape.map((_, d) => (d === dim ? index.strides[0] : 0));
    return add(target, dim, index, idxStrides, src, src.shape);
  };

  return { scatterAdd, indexAdd };
}

/** Whether every element of the int32 view `index` lies in [0, size). */
function indicesInRange(index: View, size: number): boolean {
  const is = index.storage.handle as Int32Array;
  const co = coalesce(index.shape, [index.strides]);
  const dims = co.shape;
  const st = co.strides[0];
  if (sizeOf(dims) === 0) return true;
  // an odometer over the coalesced dims (a contiguous index is one flat loop)
  const pos = new Array<number>(dims.length).fill(0);
  const last = dims.length - 1;
  let off = index.offset;
  for (;;) {
    if (last < 0) return is[off] >= 0 && is[off] < size;
    const n = dims[last];
    const s = st[last];
    for (let j = 0, o = off; j < n; j++, o += s) {
      const i = is[o];
      if (i < 0 || i >= size) return false;
    }
    let d = last - 1;
    for (; d >= 0; d--) {
      off += st[d];
      if (++pos[d] < dims[d]) break;
      off -= st[d] * dims[d];
      pos[d] = 0;
    }
    if (d < 0) return true;
  }
}
