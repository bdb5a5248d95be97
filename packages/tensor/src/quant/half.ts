/**
 * 16-bit floats on the host: IEEE 754 binary16 (`f16`: 1 sign, 5 exponent, 10 fraction bits)
 * and bfloat16 (`bf16`: the upper 16 bits of a float32). Encoding rounds a float32 to the
 * nearest 16-bit value, ties to the even bit pattern (IEEE's default rounding); NaN stays a
 * quiet NaN with its sign. Decoding to float32 is exact (every 16-bit value is a float32).
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Drops the low `shift` bits of m (1 ≤ shift ≤ 24), rounding to nearest, ties to even. */
function roundShift(m: number, shift: number): number {
  const q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q;
}

/**
 * The f16 bit pattern nearest to `x` (first rounded to float32), ties to even; beyond ±65504
 * (more than half an ulp past it) it is ±Infinity (0x7c00 / 0xfc00).
 *
 * @example
 * lr.f16Bits(1); // 0x3c00
 * lr.f16Bits(65520); // 0x7c00: the tie between 65504 and 2^16 goes to the even pattern, Infinity
 */
export function f16Bits(x: number): number {
  F32[0] = x;
  const b = U32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man !== 0 ? 0x200 | (man >>> 13) : 0);
  const e = exp - 112; // the f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e >= 1) return sign | roundShift((e << 23) | man, 13); // a carry moves into the exponent (and to Infinity)
  // f16 subnormal (or zero): the value is m·2^(exp−150) with m = 1.man (24 bits), a multiple of
  // 2^−24 when shifted right by 14 − e bits
  if (exp === 0 || e < -10) return sign; // float32 subnormals and anything below 2^−25 round to ±0
  return sign | roundShift(man | 0x800000, 14 - e);
}

/**
 * The bf16 bit pattern nearest to `x` (first rounded to float32), ties to even: the float32's
 * upper 16 bits, rounded. Beyond bf16's largest finite value (≈3.39e38) it is ±Infinity.
 *
 * @example
 * lr.bf16Bits(1); // 0x3f80
 * lr.bf16Bits(1 + 2 ** -8); // 0x3f80: a tie, to the even pattern
 */
export function bf16Bits(x: number): number {
  F32[0] = x;
  const b = U32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return (b >>> 16) | 0x40; // NaN: quiet, sign kept
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

let F16_TABLE: Float32Array | null = null;

/** float32 value of every f16 pattern (built on first use, 256 KB). */
export function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Float32Array(65536);
  const u = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0x1f) u[h] = sign | 0x7f800000 | (frac << 13);
    else if (exp !== 0) u[h] = sign | ((exp + 112) << 23) | (frac << 13);
    else t[h] = (sign ? -1 : 1) * frac * 2 ** -24; // subnormal or ±0 (exact in float32)
  }
  F16_TABLE = t;
  return t;
}

/**
 * The value of an f16 bit pattern (the low 16 bits of `h`), exactly.
 *
 * @example
 * lr.f16Value(0x3c00); // 1
 * lr.f16Value(0x0001); // 5.960464477539063e-8 = 2^−24, the smallest subnormal
 */
export function f16Value(h: number): number {
  return f16Table()[h & 0xffff];
}

/**
 * The value of a bf16 bit pattern (the low 16 bits of `h`), exactly: those bits as the upper
 * half of a float32.
 *
 * @example
 * lr.bf16Value(0x3f80); // 1
 * lr.bf16Value(0xc040); // -3
 */
export function bf16Value(h: number): number {
  U32[0] = (h & 0xffff) << 16;
  return F32[0];
}
