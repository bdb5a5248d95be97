/**
 * Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3" (SC 2011), as its reference implementation Random123 defines it:
 * a 128-bit counter (c0..c3) and a 64-bit key (k0, k1) map to four 32-bit words by ten rounds of
 * two 32×32→64 multiplications, the key bumped by the Weyl constants between rounds. Every value
 * is a pure function of (key, counter): device kernels compute element i of a draw where it is
 * needed, with no state and no upload.
 *
 * The arithmetic is exact u32 on every backend: the high word of a 32×32 product is built from
 * 16-bit halves (WGSL has no 64-bit integers), so the TypeScript functions here, the CPU kernels
 * that call them and the WGSL below give identical bits.
 *
 * Counters used by the engine (the key is a fresh draw from a `Generator` per random tensor);
 * each counter gives four words, which four consecutive elements share:
 * - an elementwise uniform draw (`lr.rand`, `F.dropout`): element i is word i mod 4 of counter
 *   (⌊i/4⌋, 0, 0, 0); a normal draw (`lr.randn`): words 2(i mod 2) and 2(i mod 2) + 1 of counter
 *   (⌊i/2⌋, 0, 0, 0);
 * - attention dropout: the probability of query row i, key column j, batch b and query head h is
 *   word j mod 4 of counter (⌊j/4⌋, i, b·H + h, ATTENTION_STREAM).
 * The CPU keeps the last counter's words (`philoxWord`), so a row walked in order computes one
 * Philox per four elements; a GPU thread computes the one it needs.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** Counter word 3 of attention-dropout draws (elementwise draws use 0): "ATT1" in ASCII. */
export const ATTENTION_STREAM = 0x41545431;

/** The key of one random draw: two 32-bit words from the tensor's `Generator`. */
export interface RandomKey {
  /** Key word 0 (an unsigned 32-bit integer). */
  readonly key0: number;
  /** Key word 1 (an unsigned 32-bit integer). */
  readonly key1: number;
}

/**
 * The high 32 bits of the 64-bit product a·b (unsigned), exactly: with a = 2¹⁶·a₁ + a₀, both
 * a₁·b and a₀·b are below 2⁴⁸ (exact in float64), and ⌊a·b / 2³²⌋ = ⌊(a₁·b + ⌊a₀·b / 2¹⁶⌋) / 2¹⁶⌋.
 * (WGSL, without float64, splits both operands: PHILOX_WGSL's `mulhi32`.)
 */
export function mulhi32(a: number, b: number): number {
  const x = b >>> 0;
  return Math.floor(((a >>> 16) * x + Math.floor(((a & 0xffff) * x) / 65536)) / 65536);
}

/**
 * Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1): writes the four output words
 * into `out` (unsigned 32-bit integers).
 *
 * @example
 * const out = new Uint32Array(4);
 * lr.philox4x32(0, 0, 0, 0, 0, 0, out); // Random123's first test vector
 * out[0].toString(16); // "6627e8d5"
 */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
): Uint32Array {
  let x0 = c0 >>> 0;
  let x1 = c1 >>> 0;
  let x2 = c2 >>> 0;
  let x3 = c3 >>> 0;
  let y0 = k0 >>> 0;
  let y1 = k1 >>> 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi32(M0, x0);
    const lo0 = Math.imul(M0, x0) >>> 0;
    const hi1 = mulhi32(M1, x2);
    const lo1 = Math.imul(M1, x2) >>> 0;
    x0 = (hi1 ^ x1 ^ y0) >>> 0;
    x1 = lo1;
    x2 = (hi0 ^ x3 ^ y1) >>> 0;
    x3 = lo0;
    y0 = (y0 + W0) >>> 0;
    y1 = (y1 + W1) >>> 0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
  return out;
}

/** The counter and key of the words in `cached` (NaN: none yet). */
const cachedAt = [Number.NaN, Number.NaN, Number.NaN, Number.NaN, Number.NaN, Number.NaN];
const cached = new Uint32Array(4);

/**
 * Word `w` (0..3) of Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1). The last
 * counter's four words are kept, so four consecutive elements sharing a counter cost one Philox.
 *
 * @example
 * lr.philoxWord(0, 0, 0, 0, 0, 0, 0).toString(16); // "6627e8d5", as philox4x32's word 0
 */
export function philoxWord(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  w: number,
): number {
  const at = cachedAt;
  if (c0 !== at[0] || c1 !== at[1] || c2 !== at[2] || c3 !== at[3] || k0 !== at[4] || k1 !== at[5]) {
    philox4x32(c0, c1, c2, c3, k0, k1, cached);
    at[0] = c0;
    at[1] = c1;
    at[2] = c2;
    at[3] = c3;
    at[4] = k0;
    at[5] = k1;
  }
  return cached[w];
}

/**
 * A 32-bit word as a uniform float in [0, 1): its top 24 bits times 2⁻²⁴ (exact in float32).
 *
 * @example
 * lr.wordToUniform(0x80000000); // 0.5
 */
export function wordToUniform(w: number): number {
  return (w >>> 8) / 16777216;
}

/**
 * Element `i` of an elementwise draw under `key`: U[0, 1) from word i mod 4 of counter
 * (⌊i/4⌋, 0, 0, 0).
 *
 * @example
 * lr.philoxUniform(0, 1, 2); // in [0, 1), the value `lr.rand` gives element 0 under key (1, 2)
 */
export function philoxUniform(i: number, key0: number, key1: number): number {
  return wordToUniform(philoxWord(i >>> 2, 0, 0, 0, key0, key1, i & 3));
}

/**
 * Element `i` of a normal draw under `key`: Box–Muller of words 2(i mod 2) and 2(i mod 2) + 1 of
 * counter (⌊i/2⌋, 0, 0, 0), √(−2 ln u₁)·cos(2π u₂) with u₁ = 1 − the first word's uniform ∈ (0, 1]
 * and u₂ = the second's, rounded to float32. (GPU logs and cosines differ from these by a few ulps: normal draws agree across
 * backends to float32 precision, uniform draws and masks bit for bit.)
 *
 * @example
 * lr.philoxNormal(0, 1, 2); // a standard normal value
 */
export function philoxNormal(i: number, key0: number, key1: number): number {
  const w = 2 * (i & 1);
  const u1 = 1 - wordToUniform(philoxWord(i >>> 1, 0, 0, 0, key0, key1, w));
  const u2 = wordToUniform(philoxWord(i >>> 1, 0, 0, 0, key0, key1, w + 1));
  return Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2));
}

/**
 * The attention-dropout threshold of probability `p`: a key is dropped when the top 24 bits of
 * its word are below it, i.e. when its uniform is below float32(p), the test `F.dropout` makes.
 *
 * @example
 * lr.dropThreshold(0.5); // 8388608 (2²³)
 */
export function dropThreshold(p: number): number {
  return Math.ceil(Math.fround(p) * 16777216);
}

/**
 * Whether attention dropout keeps the probability of (batch·heads + head `bh`, query `row`, key
 * `col`) under `key` with threshold `dropThreshold(p)`: the mask the attention kernels apply.
 *
 * @example
 * lr.attentionKeep(0, 3, 1, 7, 9, lr.dropThreshold(0.1)); // true for about 90% of (row, col)
 */
export function attentionKeep(
  bh: number,
  row: number,
  col: number,
  key0: number,
  key1: number,
  threshold: number,
): boolean {
  return philoxWord(col >>> 2, row, bh, ATTENTION_STREAM, key0, key1, col & 3) >>> 8 >= threshold;
}

/**
 * WGSL of the generator: `philox4x32(counter, key)` (the four words), `word_uniform`, and the
 * elementwise draws `philox_uniform` / `philox_normal` (the attention kernels call `philox4x32`
 * for their keep bits: backends/webgpu/attention-shared.ts). The same arithmetic as
 * `philox4x32` above.
 */
export const PHILOX_WGSL = /* wgsl */ `
fn mulhi32(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let mid = ((a0 * b0) >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}
fn philox4x32(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
  var x = c;
  var y = k;
  for (var r = 0u; r < 10u; r++) {
    let hi0 = mulhi32(0xd2511f53u, x.x);
    let lo0 = 0xd2511f53u * x.x;
    let hi1 = mulhi32(0xcd9e8d57u, x.z);
    let lo1 = 0xcd9e8d57u * x.z;
    x = vec4<u32>(hi1 ^ x.y ^ y.x, lo1, hi0 ^ x.w ^ y.y, lo0);
    y = y + vec2<u32>(0x9e3779b9u, 0xbb67ae85u);
  }
  return x;
}
fn word_uniform(w: u32) -> f32 { return f32(w >> 8u) * 5.9604644775390625e-8; }
fn philox_uniform(i: u32, k0: u32, k1: u32) -> f32 {
  let w = philox4x32(vec4<u32>(i >> 2u, 0u, 0u, 0u), vec2<u32>(k0, k1));
  return word_uniform(w[i & 3u]);
}
fn philox_normal(i: u32, k0: u32, k1: u32) -> f32 {
  let w = philox4x32(vec4<u32>(i >> 1u, 0u, 0u, 0u), vec2<u32>(k0, k1));
  let odd = (i & 1u) == 1u;
  let u1 = 1.0 - word_uniform(select(w.x, w.z, odd));
  let u2 = word_uniform(select(w.y, w.w, odd));
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
`;
