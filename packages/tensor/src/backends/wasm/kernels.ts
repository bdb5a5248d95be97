import type { FunctionBuilder, Local, ModuleBuilder } from './assembler.js';
import { emitAttentionDropout } from './attention-dropout.js';
import { emitAttentionRows } from './attention-rows.js';
import { emitCrossEntropy } from './cross-entropy.js';
import { emitNorm } from './norm.js';
import { emitScatter } from './scatter.js';
import { emitSoftmax } from './softmax.js';

/**
 * The non-gemm kernels of the module. Each works on rows or element ranges given by address,
 * so a thread given some rows (or a range) computes exactly what one thread would: results
 * never depend on the thread count. Every kernel mirrors the arithmetic of its TypeScript
 * reference in backends/cpu (float64 where it uses float64), so most results are bit-identical.
 *
 * - `reduce_{sum,prod,max,min,argmax,argmin}(x, out, rows, inner)`: contiguous float32 rows.
 * - `adam(p, g, m, v, n, decay, l2, beta1, beta2, stepSize, sqrtBc2, eps)` and `adam_amsgrad`
 *   (with the max-second-moment buffer `h` after `v`): contiguous float32, in place.
 * - `gather32(x, sx0, sx1, sx2, idx, si0, si1, si2, out, d0, d1, d2, size)`: 3-D gather along the
 *   middle axis (strides in bytes, indices already checked), for 4-byte elements.
 * - `scatter_add_f32`, `scatter_add_i32`: scatterAdd and indexAdd, 3-D adds along the middle
 *   axis (scatter.ts).
 * - `softmax(x, out, rows, cols)`: contiguous float32 rows (softmax.ts).
 * - `norm_fwd` and `norm_bwd`: layer/RMS norm over contiguous float32 rows (norm.ts).
 * - `attn_mask`, `attn_ds`, `add_f32`: the attention's row loops between its gemms (attention-rows.ts).
 * - `attn_dropmask`, `mul_f32`: the attention-dropout factors by Philox in Wasm (attention-dropout.ts).
 * - `ce_rows`: cross-entropy of contiguous float32 rows, optionally overwritten by their gradient (cross-entropy.ts).
 *
 * @example
 * const m = new ModuleBuilder({ initial: 1, maximum: 65536, shared: true });
 * emitKernels(m);
 */
export function emitKernels(module: ModuleBuilder): void {
  emitSum(module);
  emitProd(module);
  emitExtreme(module, 'max');
  emitExtreme(module, 'min');
  emitArg(module, 'argmax');
  emitArg(module, 'argmin');
  emitAdam(module, false);
  emitAdam(module, true);
  emitGather(module);
  emitScatter(module);
  emitSoftmax(module);
  emitNorm(module);
  emitCrossEntropy(module);
  emitAttentionRows(module);
  emitAttentionDropout(module);
}

function params(f: FunctionBuilder, n: number): Local[] {
  return Array.from({ length: n }, (_, i) => f.param(i));
}

function locals(f: FunctionBuilder, type: 'i32' | 'f64' | 'f32' | 'v128', n: number): Local[] {
  return Array.from({ length: n }, () => f.local(type));
}

/** `for r < rows: body(row address, r)`, rows of `inner` float32s from `x`. */
function eachRow(
  f: FunctionBuilder,
  x: Local,
  rows: Local,
  inner: Local,
  body: (row: Local, r: Local) => void,
) {
  const [r, row] = locals(f, 'i32', 2);
  f.get(x).set(row);
  f.for(r, 0, rows, 1, () => {
    body(row, r);
    f.get(row).get(inner).i32(2).op('i32.shl', 'i32.add').set(row);
  });
}

/**
 * Sum in float64 (as the reference): two f64x2 accumulators take elements 4j..4j+3, the tail
 * goes to a scalar; the four partial sums are added in a fixed order.
 */
function emitSum(module: ModuleBuilder): void {
  const f = module.function('reduce_sum', ['i32', 'i32', 'i32', 'i32'], []);
  const [x, out, rows, inner] = params(f, 4);
  const [j, end4] = locals(f, 'i32', 2);
  const [a0, a1] = locals(f, 'v128', 2);
  const [t] = locals(f, 'f64', 1);
  f.get(inner).i32(-4).op('i32.and').set(end4);
  eachRow(f, x, rows, inner, (row, r) => {
    f.f64(0).op('f64x2.splat').tee(a0).set(a1);
    f.f64(0).set(t);
    f.for(j, 0, end4, 4, () => {
      const at = () => f.get(row).get(j).i32(2).op('i32.shl', 'i32.add');
      f.get(a0);
      at();
      f.mem('v128.load64_zero').op('f64x2.promote_low_f32x4', 'f64x2.add').set(a0);
      f.get(a1);
      at();
      f.mem('v128.load64_zero', 8).op('f64x2.promote_low_f32x4', 'f64x2.add').set(a1);
    });
    f.for(j, end4, inner, 1, () => {
      f.get(t)
        .get(row)
        .get(j)
        .i32(2)
        .op('i32.shl', 'i32.add')
        .mem('f32.load')
        .op('f64.promote_f32', 'f64.add');
      f.set(t);
    });
    f.get(a0).get(a1).op('f64x2.add').set(a0);
    f.get(out).get(r).i32(2).op('i32.shl', 'i32.add');
    f.get(a0).lane('f64x2.extract_lane', 0).get(a0).lane('f64x2.extract_lane', 1).op('f64.add');
    f.get(t).op('f64.add', 'f32.demote_f64').mem('f32.store');
  });
}

/** Product in float64, sequentially (bit-identical to the reference). */
function emitProd(module: ModuleBuilder): void {
  const f = module.function('reduce_prod', ['i32', 'i32', 'i32', 'i32'], []);
  const [x, out, rows, inner] = params(f, 4);
  const [j] = locals(f, 'i32', 1);
  const [p] = locals(f, 'f64', 1);
  eachRow(f, x, rows, inner, (row, r) => {
    f.f64(1).set(p);
    f.for(j, 0, inner, 1, () => {
      f.get(p)
        .get(row)
        .get(j)
        .i32(2)
        .op('i32.shl', 'i32.add')
        .mem('f32.load')
        .op('f64.promote_f32', 'f64.mul');
      f.set(p);
    });
    f.get(out).get(r).i32(2).op('i32.shl', 'i32.add').get(p).op('f32.demote_f64').mem('f32.store');
  });
}

/**
 * Max/min: four lanes keep their running extreme with `pmax`/`pmin` (`best < v ? v : best`: the
 * reference's comparison, so the first of equal values stays) and OR a NaN mask; lanes are then
 * combined in order, then the tail. Any NaN gives NaN, as in the reference. Only the sign of an
 * extreme zero can differ from it (when −0 and +0 tie in different lanes).
 */
function emitExtreme(module: ModuleBuilder, op: 'max' | 'min'): void {
  const f = module.function(`reduce_${op}`, ['i32', 'i32', 'i32', 'i32'], []);
  const [x, out, rows, inner] = params(f, 4);
  const [j, end4, start] = locals(f, 'i32', 3);
  const [best, nan, v] = locals(f, 'v128', 3);
  const [b, s] = locals(f, 'f32', 2);
  const better = op === 'max' ? 'f32.gt' : 'f32.lt';
  f.get(inner).i32(-4).op('i32.and').set(end4);
  eachRow(f, x, rows, inner, (row, r) => {
    f.i32(0).op('i32x4.splat').set(nan);
    f.i32(0).set(start);
    f.get(row).mem('f32.load').set(b);
    f.get(end4).if(() => {
      f.get(row).mem('v128.load').tee(best).get(best).op('f32x4.ne').set(nan);
      f.for(j, 4, end4, 4, () => {
        f.get(row).get(j).i32(2).op('i32.shl', 'i32.add').mem('v128.load').set(v);
        f.get(nan).get(v).get(v).op('f32x4.ne', 'v128.or').set(nan);
        f.get(best)
          .get(v)
          .op(op === 'max' ? 'f32x4.pmax' : 'f32x4.pmin')
          .set(best);
      });
      f.get(best).lane('f32x4.extract_lane', 0).set(b);
      for (let l = 1; l < 4; l++) {
        f.get(best).lane('f32x4.extract_lane', l).tee(s).get(b).op(better);
        f.if(() => f.get(s).set(b));
      }
      f.get(end4).set(start);
    });
    f.for(j, start, inner, 1, () => {
      f.get(row).get(j).i32(2).op('i32.shl', 'i32.add').mem('f32.load').tee(s).get(s).op('f32.ne');
      f.if(() => f.i32(-1).op('i32x4.splat').set(nan));
      f.get(s).get(b).op(better);
      f.if(() => f.get(s).set(b));
    });
    f.get(nan).op('v128.any_true').get(b).get(b).op('f32.ne');
    f.op('i32.or');
    f.if(() => f.f32(Number.NaN).set(b));
    f.get(out).get(r).i32(2).op('i32.shl', 'i32.add').get(b).mem('f32.store');
  });
}

/** Argmax/argmin, scalar and exactly the reference's rule: first occurrence; the first NaN wins. */
function emitArg(module: ModuleBuilder, op: 'argmax' | 'argmin'): void {
  const f = module.function(`reduce_${op}`, ['i32', 'i32', 'i32', 'i32'], []);
  const [x, out, rows, inner] = params(f, 4);
  const [j, bi] = locals(f, 'i32', 2);
  const [b, v] = locals(f, 'f32', 2);
  eachRow(f, x, rows, inner, (row, r) => {
    f.i32(0).set(bi);
    f.get(row).mem('f32.load').set(b);
    f.block(() => {
      f.get(b).get(b).op('f32.ne').brIf(0);
      f.for(j, 1, inner, 1, () => {
        f.get(row).get(j).i32(2).op('i32.shl', 'i32.add').mem('f32.load').tee(v).get(v).op('f32.ne');
        f.if(() => f.get(j).set(bi).br(3)); // out of the if, the body, the loop and the for's block
        f.get(v)
          .get(b)
          .op(op === 'argmax' ? 'f32.gt' : 'f32.lt');
        f.if(() => f.get(v).set(b).get(j).set(bi));
      });
    });
    f.get(out).get(r).i32(2).op('i32.shl', 'i32.add').get(bi).mem('i32.store');
  });
}

/**
 * Adam/AdamW in float64, two elements at a time (f64x2), with the reference's operation order
 * and its roundings to float32 (`fround`) at the same places: bit-identical to it.
 */
function emitAdam(module: ModuleBuilder, amsgrad: boolean): void {
  const ptrs = amsgrad ? 6 : 5; // p, g, m, v, [h], n
  const f = module.function(
    amsgrad ? 'adam_amsgrad' : 'adam',
    [...Array<'i32'>(ptrs).fill('i32'), ...Array<'f64'>(7).fill('f64')],
    [],
  );
  const ps = params(f, ptrs);
  const [p, g, m, v] = ps;
  const h = amsgrad ? ps[4] : null;
  const n = ps[ptrs - 1];
  const [decay, l2, beta1, beta2, stepSize, sqrtBc2, eps] = Array.from({ length: 7 }, (_, i) =>
    f.param(ptrs + i),
  );
  const [i, off, end2] = locals(f, 'i32', 3);
  const [vDecay, vL2, vB1, vB2, vC1, vC2, vStep, vBc2, vEps, pi, gi, mi, vi, hi] = locals(f, 'v128', 14);
  const [sp, sg, sm, sv, sh] = locals(f, 'f64', 5);
  const splat = (src: Local, dst: Local) => f.get(src).op('f64x2.splat').set(dst);
  splat(decay, vDecay);
  splat(l2, vL2);
  splat(beta1, vB1);
  splat(beta2, vB2);
  f.f64(1).get(beta1).op('f64.sub', 'f64x2.splat').set(vC1);
  f.f64(1).get(beta2).op('f64.sub', 'f64x2.splat').set(vC2);
  splat(stepSize, vStep);
  splat(sqrtBc2, vBc2);
  splat(eps, vEps);
  // load two float32s as float64s; round float64s to float32 and back (Math.fround)
  const load = (base: Local) =>
    f.get(base).get(off).op('i32.add').mem('v128.load64_zero').op('f64x2.promote_low_f32x4');
  const fround = () => f.op('f32x4.demote_f64x2_zero', 'f64x2.promote_low_f32x4');
  const store = (base: Local, value: Local) =>
    f.get(base).get(off).op('i32.add').get(value).op('f32x4.demote_f64x2_zero').store64Lane(0);
  f.get(n).i32(-2).op('i32.and').set(end2);
  f.for(i, 0, end2, 2, () => {
    f.get(i).i32(2).op('i32.shl').set(off);
    load(p);
    f.get(vDecay).op('f64x2.mul');
    fround();
    f.set(pi);
    load(g);
    f.get(vL2).get(pi).op('f64x2.mul', 'f64x2.add').set(gi);
    f.get(vB1);
    load(m);
    f.op('f64x2.mul').get(vC1).get(gi).op('f64x2.mul', 'f64x2.add');
    fround();
    f.set(mi);
    f.get(vB2);
    load(v);
    f.op('f64x2.mul').get(vC2).get(gi).op('f64x2.mul').get(gi).op('f64x2.mul', 'f64x2.add');
    fround();
    f.set(vi);
    store(m, mi);
    store(v, vi);
    if (h) {
      load(h);
      f.get(vi).op('f64x2.max').set(hi);
      store(h, hi);
    }
    // p ← pi − stepSize·mi / (√v̂ / sqrtBc2 + eps)
    f.get(pi)
      .get(vStep)
      .get(mi)
      .op('f64x2.mul')
      .get(h ? hi : vi)
      .op('f64x2.sqrt')
      .get(vBc2)
      .op('f64x2.div');
    f.get(vEps).op('f64x2.add', 'f64x2.div', 'f64x2.sub').set(pi);
    store(p, pi);
  });
  // an odd last element, in scalar float64 (the same expression)
  f.get(end2).get(n).op('i32.lt_s');
  f.if(() => {
    f.get(end2).i32(2).op('i32.shl').set(off);
    const at = (base: Local) => f.get(base).get(off).op('i32.add');
    at(p)
      .mem('f32.load')
      .op('f64.promote_f32')
      .get(decay)
      .op('f64.mul', 'f32.demote_f64', 'f64.promote_f32')
      .set(sp);
    at(g).mem('f32.load').op('f64.promote_f32').get(l2).get(sp).op('f64.mul', 'f64.add').set(sg);
    f.get(beta1);
    at(m).mem('f32.load').op('f64.promote_f32', 'f64.mul').f64(1).get(beta1).op('f64.sub').get(sg);
    f.op('f64.mul', 'f64.add', 'f32.demote_f64', 'f64.promote_f32').set(sm);
    f.get(beta2);
    at(v)
      .mem('f32.load')
      .op('f64.promote_f32', 'f64.mul')
      .f64(1)
      .get(beta2)
      .op('f64.sub')
      .get(sg)
      .op('f64.mul');
    f.get(sg).op('f64.mul', 'f64.add', 'f32.demote_f64', 'f64.promote_f32').set(sv);
    at(m).get(sm).op('f32.demote_f64').mem('f32.store');
    at(v).get(sv).op('f32.demote_f64').mem('f32.store');
    if (h) {
      at(h).mem('f32.load').op('f64.promote_f32').get(sv).op('f64.max').set(sh);
      at(h).get(sh).op('f32.demote_f64').mem('f32.store');
    }
    at(p)
      .get(sp)
      .get(stepSize)
      .get(sm)
      .op('f64.mul')
      .get(h ? sh : sv)
      .op('f64.sqrt')
      .get(sqrtBc2)
      .op('f64.div');
    f.get(eps).op('f64.add', 'f64.div', 'f64.sub', 'f32.demote_f64').mem('f32.store');
  });
}

/**
 * gather32: x is viewed as [d0, ·, d2] with byte strides (sx0, sx1, sx2), idx as [d0, d1, d2]
 * (int32, byte strides si0..si2); out[a, b, c] = x[a, idx[a, b, c], c], contiguous.
 */
function emitGather(module: ModuleBuilder): void {
  const f = module.function('gather32', Array<'i32'>(12).fill('i32'), []);
  const [x, sx0, sx1, sx2, idx, si0, si1, si2, out, d0, d1, d2] = params(f, 12);
  const [a, b, c, xa, ia, ib, o] = locals(f, 'i32', 7);
  f.get(out).set(o);
  f.for(a, 0, d0, 1, () => {
    f.get(x).get(a).get(sx0).op('i32.mul', 'i32.add').set(xa);
    f.get(idx).get(a).get(si0).op('i32.mul', 'i32.add').set(ia);
    f.for(b, 0, d1, 1, () => {
      f.get(ia).get(b).get(si1).op('i32.mul', 'i32.add').set(ib);
      f.for(c, 0, d2, 1, () => {
        f.get(o);
        f.get(xa)
          .get(ib)
          .get(c)
          .get(si2)
          .op('i32.mul', 'i32.add')
          .mem('i32.load')
          .get(sx1)
          .op('i32.mul', 'i32.add');
        f.get(c).get(sx2).op('i32.mul', 'i32.add').mem('i32.load').mem('i32.store');
        f.get(o).i32(4).op('i32.add').set(o);
      });
    });
  });
}
