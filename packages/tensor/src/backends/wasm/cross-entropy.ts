import type { KernelTable } from '../../backend.js';
import { checkLabels } from '../cpu/cross-entropy.js';
import type { Local, ModuleBuilder } from './assembler.js';
import { F64x2Math } from './math.js';
import type { Executor } from './matmul.js';
import { ranges } from './ranges.js';
import type { WasmRuntime } from './runtime.js';

/**
 * `ce_rows(x, labels, labelStride, out, rows, cols, ignoreIndex, writeGrad, keep, off)`: the
 * cross-entropy of contiguous float32 rows against int32 labels (`labelStride` bytes apart),
 * with the TypeScript kernel's arithmetic (backends/cpu/cross-entropy.ts): m = max (NaN-
 * propagating, as `f64.max`) and Σ x in float64 in index order, s = Σ exp(x − m) in float64
 * (math.ts's exp, ≈ 1e-14 relative, two at a time, added in index order), lse = m + log s,
 * loss = f32(lse − keep·x[t] − off·Σx) with keep = 1 − ε and off = ε/cols; with `writeGrad`
 * the row becomes f32(exp(x − lse) − target), target = off, plus keep at t. A row whose label
 * is ignoreIndex gets loss 0 (and a zero gradient). Labels must be in range (the caller checks
 * them first). Rows are independent: any split over threads gives the same bits.
 *
 * @example
 * emitCrossEntropy(m); // then exports.ce_rows(x, labels, 4, out, rows, cols, -100, 0, 1, 0)
 */
export function emitCrossEntropy(module: ModuleBuilder): void {
  const f = module.function(
    'ce_rows',
    ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f64', 'f64'],
    [],
  );
  const [x, labels, labelStride, out, rows, cols, ignore, writeGrad, keep, off] = Array.from(
    { length: 10 },
    (_, i) => f.param(i),
  );
  const [r, j, xr, t, end2] = Array.from({ length: 5 }, () => f.local('i32'));
  const [m, sumX, s, lse, xt] = Array.from({ length: 5 }, () => f.local('f64'));
  const [pair, e, offv] = Array.from({ length: 3 }, () => f.local('v128'));
  const math = new F64x2Math(f);
  const at = (base: Local, i: Local) => f.get(base).get(i).i32(2).op('i32.shl', 'i32.add');
  const one = (i: Local) => at(xr, i).mem('f32.load').op('f64.promote_f32');
  /** Pushes exp(v − c) for a pair at `j` (n = 2) or the element at `j` in lane 0 (n = 1). */
  const expPair = (n: 1 | 2, c: Local) => {
    if (n === 2) at(xr, j).mem('v128.load64_zero').op('f64x2.promote_low_f32x4');
    else one(j).op('f64x2.splat');
    f.get(c).op('f64x2.splat', 'f64x2.sub').set(pair);
    math.exp(pair);
  };
  f.get(cols).i32(-2).op('i32.and').set(end2);
  f.get(off).op('f64x2.splat').set(offv);
  f.get(x).set(xr);
  f.for(r, 0, rows, 1, () => {
    f.get(labels).get(r).get(labelStride).op('i32.mul', 'i32.add').mem('i32.load').set(t);
    f.get(t).get(ignore).op('i32.eq');
    f.if(
      () => {
        at(out, r).f32(0).mem('f32.store');
        f.get(writeGrad);
        f.if(() => {
          f.for(j, 0, cols, 1, () => {
            at(xr, j).f32(0).mem('f32.store');
          });
        });
      },
      () => {
        // max and Σ x in index order
        f.f64(Number.NEGATIVE_INFINITY).set(m);
        f.f64(0).set(sumX);
        f.for(j, 0, cols, 1, () => {
          one(j).set(xt);
          f.get(m).get(xt).op('f64.max').set(m);
          f.get(sumX).get(xt).op('f64.add').set(sumX);
        });
        // s = Σ exp(x − m), the lanes added in index order
        f.f64(0).set(s);
        f.for(j, 0, end2, 2, () => {
          expPair(2, m);
          f.set(e);
          for (let l = 0; l < 2; l++) f.get(s).get(e).lane('f64x2.extract_lane', l).op('f64.add').set(s);
        });
        f.get(end2).get(cols).op('i32.lt_s');
        f.if(() => {
          f.get(end2).set(j);
          expPair(1, m);
          f.lane('f64x2.extract_lane', 0).get(s).op('f64.add').set(s);
        });
        // lse = m + log s
        f.get(s).op('f64x2.splat').set(pair);
        math.log(pair);
        f.lane('f64x2.extract_lane', 0).get(m).op('f64.add').set(lse);
        one(t).set(xt);
        at(out, r);
        f.get(lse).get(keep).get(xt).op('f64.mul', 'f64.sub').get(off).get(sumX).op('f64.mul', 'f64.sub');
        f.op('f32.demote_f64').mem('f32.store');
        f.get(writeGrad);
        f.if(() => {
          // exp(x − lse) − off everywhere (pairs, then the odd last element) …
          f.for(j, 0, end2, 2, () => {
            at(xr, j);
            expPair(2, lse);
            f.get(offv).op('f64x2.sub', 'f32x4.demote_f64x2_zero').store64Lane(0);
          });
          f.get(end2).get(cols).op('i32.lt_s');
          f.if(() => {
            f.get(end2).set(j);
            at(xr, j);
            expPair(1, lse);
            f.get(offv).op('f64x2.sub').lane('f64x2.extract_lane', 0).op('f32.demote_f64').mem('f32.store');
          });
          // … then the label's element from its saved value: exp(x_t − lse) − (keep + off)
          at(xr, t);
          f.get(xt).get(lse).op('f64.sub', 'f64x2.splat').set(pair);
          math.exp(pair);
          f.lane('f64x2.extract_lane', 0).get(keep).get(off).op('f64.add', 'f64.sub', 'f32.demote_f64');
          f.mem('f32.store');
        });
      },
    );
    f.get(xr).get(cols).i32(2).op('i32.shl', 'i32.add').set(xr);
  });
}

// a row of the demo's 65 classes costs ≈ 0.5 µs: a worker pays from a few thousand elements
const MIN_PARALLEL_CE = 2 ** 14;

/**
 * `crossEntropyRows` on the kernel above: x and the labels are read where they lie (adopted into
 * the heap if needed; with `writeGrad` the gradient is written into x's heap block), the labels
 * checked first by the TypeScript kernel's rule (`checkLabels`: an OpError before anything is
 * written). Empty shapes, and an ignoreIndex outside int32 (which no int32 label can equal), run
 * the TypeScript kernel.
 *
 * @example
 * registerKernels('cpu', { crossEntropyRows: wasmCrossEntropy(rt, exec, tsCrossEntropyRows) });
 */
export function wasmCrossEntropy(
  rt: WasmRuntime,
  exec: Executor,
  fallback: KernelTable['crossEntropyRows'],
): KernelTable['crossEntropyRows'] {
  const mem = rt.storages;
  return (x, labels, rows, cols, params) => {
    const { ignoreIndex, labelSmoothing: eps, writeGrad } = params;
    if (rows * cols === 0 || (ignoreIndex | 0) !== ignoreIndex)
      return fallback(x, labels, rows, cols, params);
    checkLabels(labels, rows, cols, ignoreIndex);
    const xa = mem.adoptView(x);
    const la = mem.adoptView(labels);
    const stride = 4 * (labels.strides[0] ?? 0);
    const out = mem.allocate('float32', rows);
    const o = mem.address(out) ?? 0;
    const threads = rows * cols >= MIN_PARALLEL_CE ? exec.threads : 1;
    const tasks = ranges(rows, threads).map(([a, b]) => [
      xa + 4 * a * cols,
      la + a * stride,
      stride,
      o + 4 * a,
      b - a,
      cols,
      ignoreIndex,
      writeGrad ? 1 : 0,
      1 - eps,
      eps / cols,
    ]);
    exec.run('ce_rows', tasks);
    return out;
  };
}
