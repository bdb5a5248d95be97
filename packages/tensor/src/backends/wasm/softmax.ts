import type { FunctionBuilder, Local, ModuleBuilder } from './assembler.js';
import { F64x2Math } from './math.js';
import { expF32x4 } from './math-f32x4.js';

/**
 * `softmax(x, out, rows, cols, lse, lens)`: row softmax over contiguous float32 rows, with the TypeScript
 * kernel's arithmetic and roundings (backends/cpu/reduce.ts): m = max (NaN-propagating, as
 * `f64.max`), e = f32(exp(x − m)) written to `out`, s = f32(Σ e, in float64 in index order),
 * y = f32(e / s); with `lse` ≠ 0 also each row's f32(m + log s) there. exp is math.ts's, so a value may differ from the TypeScript kernel's by 1 ulp
 * where exp's float32 rounding does. With `lens` ≠ 0 (an int32 per row), row r's values from
 * lens[r] on are taken as −∞ without being read (the attention's masked tail: causal rows, a
 * mask's trailing keys): only its first lens[r] values are exponentiated and the rest written 0
 * (NaN where the row’s sum is NaN: its max is −∞, or it holds +∞ or NaN) — the bits the full −∞-padded row gives. Rows are
 * independent: any split over threads gives the same bits. Four elements a turn: the max and
 * the division are f32x4 (exactly the float64 ones on float32 values), exp two f64x2 halves;
 * 16.3 → 12.5 ns an element of a causal 128×128 head (CPU time, same process, load 11; same bits).
 * `softmax_f32` (same arguments) is the float32 kernel below, for the attention.
 *
 * @example
 * emitSoftmax(m); // then exports.softmax(xAddr, outAddr, rows, cols, 0, 0)
 */
export function emitSoftmax(module: ModuleBuilder): void {
  emitRowSoftmax(module, 'softmax', true);
  emitRowSoftmax(module, 'softmax_f32', false);
  emitSoftmaxFromLse(module);
}

/** Row elements j = from..cols−1 (address `at()`) = lane 0 of `fill`, four at a time then one. */
function fillTail(
  f: FunctionBuilder,
  j: Local,
  from: Local,
  cols: Local,
  at: () => FunctionBuilder,
  fill: Local,
): void {
  f.get(from).set(j);
  f.block(() => {
    f.loop(() => {
      f.get(j).i32(4).op('i32.add').get(cols).op('i32.gt_s').brIf(1);
      at().get(fill).mem('v128.store');
      f.get(j).i32(4).op('i32.add').set(j).br(0);
    });
  });
  f.for(j, j, cols, 1, () => {
    at().get(fill).lane('f32x4.extract_lane', 0).mem('f32.store');
  });
}

/**
 * `softmax_from_lse(x, rows, cols, lse, lss, lens)`: in place, x = exp(x − lse[r]) (float32,
 * math-f32x4.ts) over row r's first lens[r] values, the rest 0 (NaN where lse[r] = −∞, as the
 * softmax of a row of −∞ gives); lse rows `lss` bytes apart. The attention's backward takes its
 * probabilities this way from the forward's lse: one pass over a row where the softmax makes
 * three (max, exp and sum, division).
 */
function emitSoftmaxFromLse(module: ModuleBuilder): void {
  const f = module.function('softmax_from_lse', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const [x, rows, cols, lse, lss, lens] = Array.from({ length: 6 }, (_, i) => f.param(i));
  const [r, j, xr, end4, len] = Array.from({ length: 5 }, () => f.local('i32'));
  const lf = f.local('f32');
  const [d4, fill] = [f.local('v128'), f.local('v128')];
  const xAt = () => f.get(xr).get(j).i32(2).op('i32.shl', 'i32.add');
  f.for(r, 0, rows, 1, () => {
    f.get(lens).get(r).i32(2).op('i32.shl', 'i32.add').mem('i32.load').set(len);
    f.get(len).i32(-4).op('i32.and').set(end4);
    f.get(x).get(r).get(cols).op('i32.mul').i32(2).op('i32.shl', 'i32.add').set(xr);
    f.get(lse).get(r).get(lss).op('i32.mul', 'i32.add').mem('f32.load').set(lf);
    f.for(j, 0, end4, 4, () => {
      xAt().mem('v128.load').get(lf).op('f32x4.splat', 'f32x4.sub').set(d4);
      xAt();
      expF32x4(f, d4);
      f.mem('v128.store');
    });
    f.for(j, end4, len, 1, () => {
      xAt().mem('f32.load').op('f32x4.splat').get(lf).op('f32x4.splat', 'f32x4.sub').set(d4);
      xAt();
      expF32x4(f, d4);
      f.lane('f32x4.extract_lane', 0).mem('f32.store');
    });
    // the tail: exp(−∞ − lse), 0 unless lse is −∞ or NaN (NaN then)
    f.f32(0).f32(Number.NaN).f32(Number.NEGATIVE_INFINITY).get(lf).op('f32.sub');
    f.f32(Number.NEGATIVE_INFINITY).op('f32.eq', 'select').set(lf);
    f.get(lf).op('f32x4.splat').set(fill);
    fillTail(f, j, len, cols, xAt, fill);
  });
}

/**
 * One row-softmax kernel. `exact`: exp in float64 (math.ts) and the sum in float64 in index
 * order, the TypeScript kernel's bits. Otherwise (`softmax_f32`, the attention's): x − m and exp in
 * float32 (math-f32x4.ts, ≤ 2 ulp), summed in float32 by lane (element j into lane j mod 4, so a
 * row's −∞ tail given by `lens` or read as −∞ gives the same bits; lanes joined (0+1)+(2+3)):
 * within (4 + 1.2·|x − m|)·1e-7 relative of the exact kernel (x − m rounds to float32: the
 * float32 gemm that made the scores rounded them as much).
 */
function emitRowSoftmax(module: ModuleBuilder, name: string, exact: boolean): void {
  const f = module.function(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const [x, out, rows, cols, lse, lens] = Array.from({ length: 6 }, (_, i) => f.param(i));
  const [r, j, xr, or, end4, len] = Array.from({ length: 6 }, () => f.local('i32'));
  const [m, s] = [f.local('f64'), f.local('f64')];
  const [mf, sf] = [f.local('f32'), f.local('f32')];
  const [acc, half, eLo, e4, sv, fill] = Array.from({ length: 6 }, () => f.local('v128'));
  const [lanes, d4] = [f.local('v128'), f.local('v128')];
  const math = new F64x2Math(f);
  const xAt = () => f.get(xr).get(j).i32(2).op('i32.shl', 'i32.add');
  const oAt = () => f.get(or).get(j).i32(2).op('i32.shl', 'i32.add');
  if (!exact) {
    // lane ids [0, 1, 2, 3]: the tail's element j goes to lane j mod 4
    f.i32(0).op('i32x4.splat');
    for (let l = 1; l < 4; l++) f.i32(l).lane('i32x4.replace_lane', l);
    f.set(lanes);
  }
  f.for(r, 0, rows, 1, () => {
    // the row's length: cols, or lens[r] (its values from there on are −∞)
    f.get(cols).set(len);
    f.get(lens);
    f.if(() => {
      f.get(lens).get(r).i32(2).op('i32.shl', 'i32.add').mem('i32.load').set(len);
    });
    f.get(len).i32(-4).op('i32.and').set(end4);
    f.get(r).get(cols).op('i32.mul').i32(2).op('i32.shl').set(j);
    f.get(x).get(j).op('i32.add').set(xr);
    f.get(out).get(j).op('i32.add').set(or);
    // max, four at a time: f32 max of float32 values is f64.max of them (commutative and
    // NaN-propagating, so the order cannot matter)
    f.f32(Number.NEGATIVE_INFINITY).op('f32x4.splat').set(acc);
    f.for(j, 0, end4, 4, () => {
      f.get(acc);
      xAt().mem('v128.load').op('f32x4.max').set(acc);
    });
    f.get(acc).lane('f32x4.extract_lane', 0).get(acc).lane('f32x4.extract_lane', 1).op('f32.max');
    f.get(acc)
      .lane('f32x4.extract_lane', 2)
      .get(acc)
      .lane('f32x4.extract_lane', 3)
      .op('f32.max', 'f32.max')
      .set(mf);
    f.for(j, end4, len, 1, () => {
      f.get(mf);
      xAt().mem('f32.load').op('f32.max').set(mf);
    });
    f.get(mf).op('f64.promote_f32').set(m);
    if (exact) {
      // e = f32(exp(x − m)) four at a time (two f64x2 halves), summed in float64 in index order
      f.f64(0).set(s);
      const expHalf = (v: () => void) => {
        v();
        f.op('f64x2.promote_low_f32x4');
        f.get(m).op('f64x2.splat', 'f64x2.sub').set(half);
        math.exp(half);
        f.op('f32x4.demote_f64x2_zero');
      };
      const addLanes = (v: typeof e4, n: number) => {
        for (let l = 0; l < n; l++) {
          f.get(s).get(v).lane('f32x4.extract_lane', l).op('f64.promote_f32', 'f64.add').set(s);
        }
      };
      f.for(j, 0, end4, 4, () => {
        xAt().mem('v128.load').set(e4);
        expHalf(() => f.get(e4));
        f.set(eLo);
        expHalf(() =>
          f.get(e4).get(e4).shuffle([8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]),
        );
        f.set(e4);
        f.get(eLo).get(e4).shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]).set(e4);
        oAt().get(e4).mem('v128.store');
        addLanes(e4, 4);
      });
      f.for(j, end4, len, 1, () => {
        expHalf(() => xAt().mem('f32.load').op('f32x4.splat'));
        f.set(e4);
        oAt().get(e4).lane('f32x4.extract_lane', 0).mem('f32.store');
        addLanes(e4, 1);
      });
    } else {
      // e = exp(x − m) in float32, four at a time, into lane sums
      f.f32(0).op('f32x4.splat').set(acc);
      f.for(j, 0, end4, 4, () => {
        xAt().mem('v128.load').get(mf).op('f32x4.splat', 'f32x4.sub').set(d4);
        expF32x4(f, d4);
        f.set(e4);
        oAt().get(e4).mem('v128.store');
        f.get(acc).get(e4).op('f32x4.add').set(acc);
      });
      f.for(j, end4, len, 1, () => {
        xAt().mem('f32.load').op('f32x4.splat').get(mf).op('f32x4.splat', 'f32x4.sub').set(d4);
        expF32x4(f, d4);
        f.set(e4);
        oAt().get(e4).lane('f32x4.extract_lane', 0).mem('f32.store');
        // into lane j mod 4 only
        f.get(acc).get(e4).get(lanes).get(j).i32(3).op('i32.and', 'i32x4.splat', 'i32x4.eq', 'v128.and');
        f.op('f32x4.add').set(acc);
      });
      f.get(acc).lane('f32x4.extract_lane', 0).get(acc).lane('f32x4.extract_lane', 1).op('f32.add');
      f.get(acc).lane('f32x4.extract_lane', 2).get(acc).lane('f32x4.extract_lane', 3).op('f32.add');
      f.op('f32.add', 'f64.promote_f32').set(s);
    }
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
    // y = f32(e / f32(s)): the float32 division of float32 values is that rounding of their
    // float64 quotient, so f32x4.div, four at a time
    f.get(s).op('f32.demote_f64').set(sf);
    f.get(sf).op('f32x4.splat').set(sv);
    f.for(j, 0, end4, 4, () => {
      oAt();
      oAt().mem('v128.load').get(sv).op('f32x4.div').mem('v128.store');
    });
    f.for(j, end4, len, 1, () => {
      oAt();
      oAt().mem('f32.load').get(sf).op('f32.div').mem('f32.store');
    });
    // the tail: what exp(−∞ − m)/s gives, 0/s: 0, or NaN where s is (a row whose max is −∞,
    // or that holds +∞ or NaN)
    f.f32(0).get(sf).op('f32.div', 'f32x4.splat').set(fill);
    fillTail(f, j, len, cols, oAt, fill);
  });
}
