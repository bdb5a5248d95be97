import type { FunctionBuilder, Local } from './assembler.js';

/**
 * Transcendental functions on float64x2 lanes for the Wasm elementwise compiler: SIMD128 has
 * none, and a call-out to `Math.exp` per element would cost more than the rest of the kernel.
 * They are computed in float64 to about 1e-14 relative error (exp: degree-12 Taylor polynomial
 * after reduction by ln 2; log: the atanh series of the mantissa), then rounded to float32 by
 * the caller like every other step, so a result equals `Math.fround(Math.exp(x))` except where
 * the true value lies within ~1e-14 of a float32 rounding boundary (1 ulp then; the tests count
 * how often: none in 10^5 samples). NaN, ±Inf, ±0 and overflow follow `Math.*`.
 *
 * Each emitter reads its operand from a v128 local and leaves the result on the stack.
 */

const f64Bits = (hi: number, lo = 0): number => {
  const b = new DataView(new ArrayBuffer(8));
  b.setUint32(0, hi);
  b.setUint32(4, lo);
  return b.getFloat64(0);
};
/** 2^52 + 1023: adding it to an integer-valued k puts k + 1023 in the low mantissa bits. */
const EXP_MAGIC = 2 ** 52 + 1023;
const LN2_HI = 0.6931471803691238; // ln 2 to 32 bits: k·LN2_HI is exact for |k| < 2^20
const LN2_LO = 1.9082149292705877e-10;
const MANTISSA = f64Bits(0x000fffff, 0xffffffff);
const ONE_BITS = 1; // 0x3ff0000000000000 is 1.0 itself
const TWO52 = 2 ** 52; // 0x4330000000000000

export class F64x2Math {
  constructor(private readonly f: FunctionBuilder) {}

  private splat(v: number): FunctionBuilder {
    return this.f.f64(v).op('f64x2.splat');
  }

  private tmp(): Local {
    return this.f.local('v128');
  }

  /** exp(x). */
  exp(x: Local): void {
    const f = this.f;
    const xc = this.tmp();
    const k = this.tmp();
    const r = this.tmp();
    // beyond ±708 the float32 result is 0 or Infinity anyway; the clamp keeps 2^k a normal number
    // (pmin/pmax are one minpd/maxpd each; f64x2.min/max's NaN and −0 rules cost a sequence, and
    // NaN passes through pmin(x, c) = c < x ? c : x anyway)
    f.get(x);
    this.splat(708).op('f64x2.pmin');
    this.splat(-708).op('f64x2.pmax').set(xc);
    f.get(xc);
    this.splat(Math.LOG2E).op('f64x2.mul', 'f64x2.nearest').set(k);
    // r = x − k ln 2 in two parts (|r| ≤ 0.35)
    f.get(xc).get(k);
    this.splat(LN2_HI).op('f64x2.mul', 'f64x2.sub');
    f.get(k);
    this.splat(LN2_LO).op('f64x2.mul', 'f64x2.sub').set(r);
    // Σ r^n / n! for n ≤ 12 (the first omitted term is below 1e-15 relative), by Estrin's scheme:
    // pairs c₂ⱼ + c₂ⱼ₊₁r joined by r², r⁴, r⁸, a dependency chain of 8 operations instead of
    // Horner's 24 (exp ran 9.1 → 6.8 ns an element with the pmin/pmax clamp, 2-core VM)
    const c = (n: number) => {
      let fact = 1;
      for (let i = 2; i <= n; i++) fact *= i;
      return 1 / fact;
    };
    const r2 = this.tmp();
    const r4 = this.tmp();
    f.get(r).get(r).op('f64x2.mul').set(r2);
    f.get(r2).get(r2).op('f64x2.mul').set(r4);
    const pair = (n: number) => {
      this.splat(c(n)).get(r);
      this.splat(c(n + 1)).op('f64x2.mul', 'f64x2.add');
    };
    const quad = (n: number) => {
      pair(n);
      pair(n + 2);
      f.get(r2).op('f64x2.mul', 'f64x2.add');
    };
    quad(0);
    quad(4);
    f.get(r4).op('f64x2.mul', 'f64x2.add');
    // + r⁸·(c₈ + c₉r + r²(c₁₀ + c₁₁r) + r⁴c₁₂)
    quad(8);
    f.get(r4);
    this.splat(c(12)).op('f64x2.mul', 'f64x2.add');
    f.get(r4).get(r4).op('f64x2.mul', 'f64x2.mul', 'f64x2.add');
    // × 2^k: (k + 2^52 + 1023)'s low bits are k + 1023, shifted into the exponent field
    f.get(k);
    this.splat(EXP_MAGIC).op('f64x2.add').i32(52).op('i64x2.shl', 'f64x2.mul').set(r);
    // outside the clamp: exactly 0 below (so −Inf·e^x is NaN as in Math), Infinity above
    this.splat(0).get(r).get(x);
    this.splat(-708).op('f64x2.lt', 'v128.bitselect').set(r);
    this.splat(Number.POSITIVE_INFINITY).get(r).get(x);
    this.splat(708).op('f64x2.gt', 'v128.bitselect');
  }

  /** log(x): −Inf at ±0, NaN below 0 and for NaN. */
  log(x: Local): void {
    const f = this.f;
    const m = this.tmp();
    const e = this.tmp();
    const big = this.tmp();
    const s = this.tmp();
    const s2 = this.tmp();
    const out = this.tmp();
    // x = m · 2^e with m in [1, 2): the mantissa bits under the exponent of 1.0
    f.get(x);
    this.splat(MANTISSA).op('v128.and');
    this.splat(ONE_BITS).op('v128.or').set(m);
    // e: the biased exponent field into the low bits of 2^52, as a float64, minus 2^52 + 1023
    f.get(x).i32(52).op('i64x2.shr_u');
    this.splat(TWO52).op('v128.or');
    this.splat(EXP_MAGIC).op('f64x2.sub').set(e);
    // m in [√½, √2): halve the large ones
    f.get(m);
    this.splat(Math.SQRT2).op('f64x2.gt').set(big);
    f.get(m);
    this.splat(0.5).op('f64x2.mul').get(m).get(big).op('v128.bitselect').set(m);
    f.get(e);
    this.splat(1).op('f64x2.add').get(e).get(big).op('v128.bitselect').set(e);
    // log m = 2 atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.172: Σ s^(2j+1)/(2j+1) for j ≤ 8
    f.get(m);
    this.splat(1).op('f64x2.sub').get(m);
    this.splat(1).op('f64x2.add', 'f64x2.div').set(s);
    f.get(s).get(s).op('f64x2.mul').set(s2);
    this.splat(1 / 17);
    for (let j = 7; j >= 0; j--) {
      f.get(s2).op('f64x2.mul');
      this.splat(1 / (2 * j + 1)).op('f64x2.add');
    }
    f.get(s).op('f64x2.mul');
    this.splat(2).op('f64x2.mul');
    f.get(e);
    this.splat(LN2_LO).op('f64x2.mul', 'f64x2.add');
    f.get(e);
    this.splat(LN2_HI).op('f64x2.mul', 'f64x2.add').set(out);
    // special values: +Inf, 0, negative or NaN
    this.splat(Number.POSITIVE_INFINITY).get(out).get(x);
    this.splat(Number.POSITIVE_INFINITY).op('f64x2.eq', 'v128.bitselect').set(out);
    this.splat(Number.NEGATIVE_INFINITY).get(out).get(x);
    this.splat(0).op('f64x2.eq', 'v128.bitselect').set(out);
    f.get(out);
    this.splat(Number.NaN).get(x);
    this.splat(0).op('f64x2.ge', 'v128.bitselect');
  }

  /** tanh(x), odd; 1 − e^(−2|x|) over 1 + e^(−2|x|), and a Taylor polynomial near 0. */
  tanh(x: Local): void {
    const f = this.f;
    const a = this.tmp();
    const e = this.tmp();
    const a2 = this.tmp();
    const mag = this.tmp();
    f.get(x).op('f64x2.abs').set(a);
    f.get(a);
    this.splat(-2).op('f64x2.mul').set(e);
    this.exp(e);
    f.set(e);
    // (1 − e)/(1 + e) loses |x|'s relative precision near 0 (cancellation): below 2^-10 the
    // series a − a³/3 + 2a⁵/15 − 17a⁷/315 is exact to 1e-20
    f.get(a).get(a).op('f64x2.mul').set(a2);
    this.splat(-17 / 315)
      .get(a2)
      .op('f64x2.mul');
    this.splat(2 / 15)
      .op('f64x2.add')
      .get(a2)
      .op('f64x2.mul');
    this.splat(-1 / 3)
      .op('f64x2.add')
      .get(a2)
      .op('f64x2.mul')
      .get(a)
      .op('f64x2.mul')
      .get(a)
      .op('f64x2.add');
    this.splat(1).get(e).op('f64x2.sub');
    this.splat(1).get(e).op('f64x2.add', 'f64x2.div');
    f.get(a);
    this.splat(2 ** -10)
      .op('f64x2.lt', 'v128.bitselect')
      .set(mag);
    // the sign bit of x (NaN stays NaN: its magnitude path is NaN)
    f.get(x).get(mag);
    this.splat(-0).op('v128.bitselect');
  }

  /** 1/(1 + e^−x) as the table's sigmoid: e^−|x| on either side. */
  sigmoid(x: Local): void {
    this.logistic(x, false);
  }

  /** x·sigmoid(x) as the table's silu. */
  silu(x: Local): void {
    this.logistic(x, true);
  }

  private logistic(x: Local, times: boolean): void {
    const f = this.f;
    const e = this.tmp();
    f.get(x).op('f64x2.abs', 'f64x2.neg').set(e);
    this.exp(e);
    f.set(e);
    // x ≥ 0: (x or 1)/(1 + e); x < 0 (and NaN): (x·e or e)/(1 + e)
    if (times) f.get(x);
    else this.splat(1);
    this.splat(1).get(e).op('f64x2.add', 'f64x2.div');
    if (times) f.get(x).get(e).op('f64x2.mul');
    else f.get(e);
    this.splat(1).get(e).op('f64x2.add', 'f64x2.div');
    f.get(x);
    this.splat(0).op('f64x2.ge', 'v128.bitselect');
  }

  /**
   * The table's geluTanh, 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³), computed as
   * x / (1 + e^(−2u)) (the same function): 1 + tanh(u) cancels for u ≪ 0, where the table's form
   * keeps only the absolute error 1e-16 of tanh (0.5% of the result at x = −6.7).
   */
  geluTanh(x: Local): void {
    const f = this.f;
    const u = this.tmp();
    f.get(x);
    this.splat(0.044715).get(x).op('f64x2.mul').get(x).op('f64x2.mul').get(x).op('f64x2.mul', 'f64x2.add');
    this.splat(-2 * Math.sqrt(2 / Math.PI))
      .op('f64x2.mul')
      .set(u);
    f.get(x);
    this.splat(1);
    this.exp(u);
    f.op('f64x2.add', 'f64x2.div');
  }

  /** The table's erf (Numerical Recipes' erfc), with this exp. */
  erf(x: Local): void {
    const f = this.f;
    const a = this.tmp();
    const t = this.tmp();
    const y = this.tmp();
    f.get(x).op('f64x2.abs').set(a);
    this.splat(1);
    this.splat(1);
    this.splat(0.5).get(a).op('f64x2.mul', 'f64x2.add', 'f64x2.div').set(t);
    const c = [
      -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
      -0.82215223, 0.17087277,
    ];
    // -a·a + c0 + t·(c1 + t·(… + t·c9)), as the table nests it
    this.splat(c[9]);
    for (let i = 8; i >= 1; i--) {
      f.get(t).op('f64x2.mul');
      this.splat(c[i]).op('f64x2.add');
    }
    f.get(t).op('f64x2.mul').set(y);
    f.get(a).op('f64x2.neg').get(a).op('f64x2.mul');
    this.splat(c[0]).op('f64x2.add').get(y).op('f64x2.add').set(y);
    this.exp(y);
    f.get(t).op('f64x2.mul').set(y);
    // x < 0: y − 1; else 1 − y
    f.get(y);
    this.splat(1).op('f64x2.sub');
    this.splat(1).get(y).op('f64x2.sub');
    f.get(x);
    this.splat(0).op('f64x2.lt', 'v128.bitselect');
  }

  /** The table's geluErf: 0.5·x·(1 + erf(x/√2)). */
  geluErf(x: Local): void {
    const f = this.f;
    const u = this.tmp();
    f.get(x);
    this.splat(Math.SQRT2).op('f64x2.div').set(u);
    this.splat(0.5).get(x).op('f64x2.mul');
    this.splat(1);
    this.erf(u);
    f.op('f64x2.add', 'f64x2.mul');
  }

  /** Math.sign: ±1, and x itself for ±0 and NaN. */
  sign(x: Local): void {
    const f = this.f;
    this.splat(1);
    this.splat(-1).get(x);
    this.splat(0).op('f64x2.gt', 'v128.bitselect');
    f.get(x).get(x);
    this.splat(0).op('f64x2.lt').get(x);
    this.splat(0).op('f64x2.gt', 'v128.or', 'v128.bitselect');
  }
}

/** The table's ops this file computes. */
export const MATH_OPS = new Set(['exp', 'log', 'tanh', 'sigmoid', 'silu', 'geluTanh', 'geluErf', 'sign']);
