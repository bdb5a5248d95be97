import type { FunctionBuilder, Local } from './assembler.js';

/**
 * exp on float32x4 lanes, to float32 accuracy (≤ 2 ulp; the float64 `F64x2Math.exp` gives
 * `Math.fround(Math.exp(x))`'s bits, this one is for kernels whose reference comparison already
 * has a tolerance: the attention's softmax, whose gemms accumulate in float32 anyway). Four lanes
 * a turn and a degree-7 polynomial instead of two lanes and degree 12.
 *
 * x = k·ln 2 + r (|r| ≤ ln 2 / 2, ln 2 in two parts), e^r by Horner (the first omitted term,
 * r⁸/8!, is below 6e-9 relative), × 2^k by adding k to the exponent field. Below −87.33 the result
 * is 0 (e^x is a float32 subnormal or 0 there: a softmax divides it by a sum ≥ 1), above 88 +∞
 * (float32 overflows at 88.72: the clamp keeps k ≤ 127); NaN stays NaN. Reads its operand from a v128 local and leaves the result on the stack.
 *
 * @example
 * const f = module.function('exp4', ['i32'], []);
 * const x = f.local('v128');
 * // … x = four floats …
 * expF32x4(f, x); // e^x on the stack
 */
/** 1.5·2²³: adding it rounds a float32 below 2²² to an integer held in the low mantissa bits. */
const MAGIC = 12582912;

export function expF32x4(f: FunctionBuilder, x: Local): void {
  const [xc, k, r, t] = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
  const splat = (v: number) => f.f32(v).op('f32x4.splat');
  // the clamp keeps 2^k a normal float32 (k in [−126, 127]); pmin/pmax pass NaN through
  f.get(x);
  splat(88).op('f32x4.pmin');
  splat(-87.33).op('f32x4.pmax').set(xc);
  // k = nearest(x·log₂e) by the 1.5·2²³ trick: t = x·log₂e + 1.5·2²³ holds k in its low mantissa
  // bits (|k| < 2²²), and t − 1.5·2²³ is k as a float (two adds, where f32x4.nearest and
  // i32x4.trunc_sat_f32x4_s are a sequence each on x86)
  f.get(xc);
  splat(Math.LOG2E).op('f32x4.mul');
  splat(MAGIC).op('f32x4.add').set(t);
  f.get(t);
  splat(MAGIC).op('f32x4.sub').set(k);
  // r = x − k ln 2: ln 2's high part has 9 significant bits, so k·LN2_HI is exact for |k| < 2^15
  f.get(xc).get(k);
  splat(0.693359375).op('f32x4.mul', 'f32x4.sub');
  f.get(k);
  splat(-2.1219444e-4).op('f32x4.mul', 'f32x4.sub').set(r);
  splat(1 / factorial(7));
  for (let n = 6; n >= 0; n--) {
    f.get(r).op('f32x4.mul');
    splat(1 / factorial(n)).op('f32x4.add');
  }
  // × 2^k: t's bits are 0x4b400000 + k, and (0x4b400000 + k + 127) << 23 is (k + 127) << 23
  // (0x4b400000's low 9 bits are 0), 2^k's bit pattern
  f.get(t);
  f.i32(127).op('i32x4.splat', 'i32x4.add');
  f.i32(23).op('i32x4.shl', 'f32x4.mul').set(r);
  splat(0).get(r).get(x);
  splat(-87.33).op('f32x4.lt', 'v128.bitselect').set(r);
  splat(Number.POSITIVE_INFINITY).get(r).get(x);
  splat(88).op('f32x4.gt', 'v128.bitselect');
}

function factorial(n: number): number {
  let p = 1;
  for (let i = 2; i <= n; i++) p *= i;
  return p;
}
