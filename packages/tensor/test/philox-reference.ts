import * as lr from '../src/index.js';

/**
 * Philox4x32-10 written from its definition (Salmon et al. 2011, Random123) with exact 64-bit
 * products in BigInt: the reference the engine's generator (philox.ts, 16-bit-half products) and
 * the masks of its kernels are tested against.
 */
export function naivePhilox(ctr: readonly number[], key: readonly number[]): number[] {
  const mask = (1n << 32n) - 1n;
  let x = ctr.map(BigInt);
  let k = key.map(BigInt);
  for (let r = 0; r < 10; r++) {
    const p0 = 0xd2511f53n * x[0];
    const p1 = 0xcd9e8d57n * x[2];
    x = [(p1 >> 32n) ^ x[1] ^ k[0], p1 & mask, (p0 >> 32n) ^ x[3] ^ k[1], p0 & mask];
    k = [(k[0] + 0x9e3779b9n) & mask, (k[1] + 0xbb67ae85n) & mask];
  }
  return x.map(Number);
}

/** The key a fresh `Generator(seed)` gives the first random tensor drawn from it. */
export function firstKey(seed: number): [number, number] {
  const g = new lr.Generator(seed);
  return [g.nextUint32(), g.nextUint32()];
}

/** Element i of an elementwise uniform draw under `key`: word i mod 4 of counter (⌊i/4⌋, 0, 0, 0). */
export function naiveUniform(i: number, key: readonly number[]): number {
  return (naivePhilox([Math.floor(i / 4), 0, 0, 0], key)[i % 4] >>> 8) / 2 ** 24;
}

/**
 * The attention-dropout factors [B, H, L, S] (kept: 1/(1 − p), dropped: 0) under `key`, from
 * the naive Philox: word j mod 4 of counter (⌊j/4⌋ for key column j, query row i, b·H + h,
 * "ATT1"), kept when its top 24 bits, as a uniform, are ≥ float32(p).
 */
export function attentionDropFactors(
  shape: readonly [number, number, number, number],
  key: readonly number[],
  p: number,
): Float32Array {
  const [b, h, l, s] = shape;
  const out = new Float32Array(b * h * l * s);
  const pf = Math.fround(p);
  const scale = p === 1 ? 0 : 1 / (1 - p);
  for (let bh = 0; bh < b * h; bh++) {
    for (let i = 0; i < l; i++) {
      for (let j = 0; j < s; j++) {
        const w = naivePhilox([Math.floor(j / 4), i, bh, 0x41545431], key)[j % 4];
        out[(bh * l + i) * s + j] = (w >>> 8) / 2 ** 24 >= pf ? scale : 0;
      }
    }
  }
  return out;
}
