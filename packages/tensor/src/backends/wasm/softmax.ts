import type { ModuleBuilder } from './assembler.js';
import { F64x2Math } from './math.js';

/**
 * `softmax(x, out, rows, cols, lse, lens)`: row softmax over contiguous float32 rows, with the TypeScript
 * kernel's arithmetic and roundings (backends/cpu/reduce.ts): m = max (NaN-propagating, as
 * `f64.max`), e = f32(exp(x − m)) written to `out`, s = f32(Σ e, in float64 in index order),
 * y = f32(e / s); with `lse` ≠ 0 also each row's f32(m + log s) there. exp is math.ts's, so a value may differ from the TypeScript kernel's by 1 ulp
 * where exp's float32 rounding does. With `lens` ≠ 0 (an int32 per row), row r's values from
 * lens[r] on are taken as −∞ without being read (the attention's masked tail: causal rows, a
 * mask's trailing keys): only its first lens[r] values are exponentiated and the rest written 0
 * (NaN on a row whose max is −∞) — the bits the full −∞-padded row gives. Rows are
 * independent: any split over threads gives the same bits.
 *
 * @example
 * emitSoftmax(m); // then exports.softmax(xAddr, outAddr, rows, cols, 0, 0)
 */
export function emitSoftmax(module: ModuleBuilder): void {
  const f = module.function('softmax', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const [x, out, rows, cols, lse, lens] = Array.from({ length: 6 }, (_, i) => f.param(i));
  const [r, j, xr, or, end2, p, q, len] = Array.from({ length: 8 }, () => f.local('i32'));
  const [m, s] = [f.local('f64'), f.local('f64')];
  const [pair, e, sv] = [f.local('v128'), f.local('v128'), f.local('v128')];
  const math = new F64x2Math(f);
  f.for(r, 0, rows, 1, () => {
    // the row's length: cols, or lens[r] (its values from there on are −∞)
    f.get(cols).set(len);
    f.get(lens);
    f.if(() => {
      f.get(lens).get(r).i32(2).op('i32.shl', 'i32.add').mem('i32.load').set(len);
    });
    f.get(len).i32(-2).op('i32.and').set(end2);
    f.get(r).get(cols).op('i32.mul').i32(2).op('i32.shl').set(j);
    f.get(x).get(j).op('i32.add').set(xr);
    f.get(out).get(j).op('i32.add').set(or);
    // max, two at a time (f64.max is commutative and NaN-propagating: the order cannot matter)
    f.f64(Number.NEGATIVE_INFINITY).op('f64x2.splat').set(pair);
    f.for(j, 0, end2, 2, () => {
      f.get(pair).get(xr).get(j).i32(2).op('i32.shl', 'i32.add');
      f.mem('v128.load64_zero').op('f64x2.promote_low_f32x4', 'f64x2.max').set(pair);
    });
    f.get(pair).lane('f64x2.extract_lane', 0).get(pair).lane('f64x2.extract_lane', 1).op('f64.max').set(m);
    f.get(end2).get(len).op('i32.lt_s');
    f.if(() => {
      f.get(m).get(xr).get(end2).i32(2).op('i32.shl', 'i32.add').mem('f32.load');
      f.op('f64.promote_f32', 'f64.max').set(m);
    });
    // e = f32(exp(x − m)) two at a time, summed in float64 in index order
    f.f64(0).set(s);
    const expPair = (n: 1 | 2) => {
      f.get(xr).get(j).i32(2).op('i32.shl', 'i32.add').set(p);
      f.get(or).get(j).i32(2).op('i32.shl', 'i32.add').set(q);
      if (n === 2) f.get(p).mem('v128.load64_zero').op('f64x2.promote_low_f32x4');
      else f.get(p).mem('f32.load').op('f64.promote_f32', 'f64x2.splat');
      f.get(m).op('f64x2.splat', 'f64x2.sub').set(pair);
      math.exp(pair);
      f.op('f32x4.demote_f64x2_zero').set(e);
      if (n === 2) f.get(q).get(e).store64Lane(0);
      else f.get(q).get(e).lane('f32x4.extract_lane', 0).mem('f32.store');
      for (let l = 0; l < n; l++) {
        f.get(s).get(e).lane('f32x4.extract_lane', l).op('f64.promote_f32', 'f64.add').set(s);
      }
    };
    f.for(j, 0, end2, 2, () => expPair(2));
    f.get(end2).get(len).op('i32.lt_s');
    f.if(() => {
      f.get(end2).set(j);
      expPair(1);
    });
    // lse (when asked): f32(m + log s) in float64 as the TypeScript attention kernel; −∞ for a
    // row of only −∞ (whose s is NaN)
    f.get(lse);
    f.if(() => {
      const at = () => f.get(lse).get(r).i32(2).op('i32.shl', 'i32.add');
      f.get(m).f64(Number.NEGATIVE_INFINITY).op('f64.eq');
      f.if(
        () => {
          at().f32(Number.NEGATIVE_INFINITY).mem('f32.store');
        },
        () => {
          f.get(s).op('f64x2.splat').set(sv);
          at();
          math.log(sv);
          f.lane('f64x2.extract_lane', 0).get(m).op('f64.add', 'f32.demote_f64').mem('f32.store');
        },
      );
    });
    // y = f32(e / f32(s))
    // two at a time: f64x2.div is the scalar division in each lane
    f.get(s).op('f32.demote_f64', 'f64.promote_f32').set(s);
    f.get(s).op('f64x2.splat').set(sv);
    f.for(j, 0, end2, 2, () => {
      f.get(or).get(j).i32(2).op('i32.shl', 'i32.add').set(q);
      f.get(q);
      f.get(q).mem('v128.load64_zero').op('f64x2.promote_low_f32x4').get(sv);
      f.op('f64x2.div', 'f32x4.demote_f64x2_zero').store64Lane(0);
    });
    f.get(end2).get(len).op('i32.lt_s');
    f.if(() => {
      f.get(or).get(end2).i32(2).op('i32.shl', 'i32.add').set(q);
      f.get(q);
      f.get(q).mem('f32.load').op('f64.promote_f32').get(s).op('f64.div', 'f32.demote_f64').mem('f32.store');
    });
    // the tail: what exp(−∞ − m)/s gives, 0 (NaN on a row whose max is −∞, as all of it)
    f.for(j, len, cols, 1, () => {
      f.get(or).get(j).i32(2).op('i32.shl', 'i32.add');
      f.f32(Number.NaN).f32(0).get(m).f64(Number.NEGATIVE_INFINITY).op('f64.eq', 'select').mem('f32.store');
    });
  });
}
