import { afterEach, describe, expect, it } from 'vitest';
import * as lr from '../src/index.js';
import { mulhi32 } from '../src/philox.js';
import { firstKey, naivePhilox, naiveUniform } from './philox-reference.js';

/**
 * The device generator (philox.ts) against Random123's published known-answer vectors and a
 * naive Philox4x32-10 written here with BigInt products (independent of the 16-bit-half
 * multiplication the engine uses), then the random tensors built on it: uniform moments over
 * 1e5 draws, element i as a pure function of (key, i), seeding, and fusion into consumers.
 */

const philox = (ctr: readonly number[], key: readonly number[]) =>
  Array.from(lr.philox4x32(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], new Uint32Array(4)));

afterEach(() => lr.manualSeed(0));

describe('Philox4x32-10', () => {
  it("matches Random123's known-answer vectors (tests/kat_vectors)", () => {
    expect(philox([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    const ones = 0xffffffff;
    expect(philox([ones, ones, ones, ones], [ones, ones])).toEqual([
      0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd,
    ]);
    expect(philox([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([
      0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1,
    ]);
  });

  it('matches a naive BigInt implementation on counters and keys of every size', () => {
    let seed = 1;
    const next = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed;
    };
    for (let t = 0; t < 500; t++) {
      const ctr = [next(), next() & 0xff, next(), t];
      const key = [next(), next()];
      expect(philox(ctr, key)).toEqual(naivePhilox(ctr, key));
    }
  });

  it('philoxWord gives the words of philox4x32, reusing the last counter only when counter and key match', () => {
    const words = (c: number[], k: number[]) =>
      [0, 1, 2, 3].map((w) => lr.philoxWord(c[0], c[1], c[2], c[3], k[0], k[1], w));
    expect(words([5, 6, 7, 8], [9, 10])).toEqual(naivePhilox([5, 6, 7, 8], [9, 10]));
    expect(words([5, 6, 7, 8], [9, 11])).toEqual(naivePhilox([5, 6, 7, 8], [9, 11]));
    expect(words([5, 6, 7, 9], [9, 11])).toEqual(naivePhilox([5, 6, 7, 9], [9, 11]));
    expect(words([0, 0, 0, 0], [0, 0])[0]).toBe(0x6627e8d5);
  });

  it('mulhi32 is the exact high word of the 64-bit product', () => {
    const cases = [
      [0xffffffff, 0xffffffff],
      [0xd2511f53, 0x12345678],
      [0x10000, 0x10000],
      [1, 0xffffffff],
      [0xcd9e8d57, 0xfffffffe],
      [0xd2511f53, 0xffffffff],
      [0xcd9e8d57, 0x80000001],
    ];
    for (const [a, b] of cases) expect(mulhi32(a, b)).toBe(Number((BigInt(a) * BigInt(b)) >> 32n));
  });
});

describe('device random tensors', () => {
  it('rand: element i is the uniform of word i mod 4 of counter (i/4, 0, 0, 0) under the drawn key', async () => {
    const [key0, key1] = firstKey(11);
    const got = await lr.rand([3, 5], { generator: new lr.Generator(11) }).data();
    const want = Array.from({ length: 15 }, (_, i) => naiveUniform(i, [key0, key1]));
    expect(Array.from(got)).toEqual(want);
  });

  it('uniform moments over 1e5 draws: mean 1/2, variance 1/12, within 5 standard errors', async () => {
    const n = 100_000;
    const u = await lr.rand([n], { generator: new lr.Generator(3) }).data();
    let sum = 0;
    let sq = 0;
    let lo = 1;
    let hi = 0;
    for (const x of u) {
      sum += x;
      sq += x * x;
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    const mean = sum / n;
    const variance = sq / n - mean * mean;
    expect(Math.abs(mean - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / n)); // 0.0046
    // the variance of the sample variance of U[0, 1) is (1/80 − 1/144)/n
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(5 * Math.sqrt((1 / 80 - 1 / 144) / n));
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    // adjacent elements are uncorrelated (counters i and i + 1)
    let cov = 0;
    for (let i = 0; i + 1 < n; i++) cov += (u[i] - 0.5) * (u[i + 1] - 0.5);
    expect(Math.abs(cov / (n - 1))).toBeLessThan((5 * (1 / 12)) / Math.sqrt(n));
  });

  it('randn: Box–Muller of words 2(i mod 2), 2(i mod 2) + 1 of counter (i/2, 0, 0, 0); moments of N(0, 1)', async () => {
    const k = firstKey(4);
    const z = await lr.randn([20_000], { generator: new lr.Generator(4) }).data();
    for (const i of [0, 1, 777, 19_999]) {
      const words = naivePhilox([Math.floor(i / 2), 0, 0, 0], k);
      const [w0, w1] = words.slice(2 * (i % 2), 2 * (i % 2) + 2);
      const u1 = 1 - (w0 >>> 8) / 2 ** 24;
      const u2 = (w1 >>> 8) / 2 ** 24;
      expect(z[i]).toBe(Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)));
    }
    let sum = 0;
    let sq = 0;
    for (const x of z) {
      sum += x;
      sq += x * x;
    }
    expect(Math.abs(sum / z.length)).toBeLessThan(5 / Math.sqrt(z.length));
    expect(Math.abs(sq / z.length - (sum / z.length) ** 2 - 1)).toBeLessThan(5 * Math.sqrt(2 / z.length));
  });

  it('a draw takes two words of the generator: same seed, same stream; the next draw differs', async () => {
    lr.manualSeed(42);
    const a = await lr.rand([8]).data();
    const b = await lr.rand([8]).data();
    lr.manualSeed(42);
    expect(Array.from(await lr.rand([8]).data())).toEqual(Array.from(a));
    expect(Array.from(await lr.rand([8]).data())).toEqual(Array.from(b));
    expect(Array.from(b)).not.toEqual(Array.from(a));
    const g = new lr.Generator(42);
    lr.rand([1000], { generator: g });
    const h = new lr.Generator(42);
    h.nextUint32();
    h.nextUint32();
    expect(g.getState()).toEqual(h.getState());
  });

  it('read through views, a draw keeps its elements: a slice, a transpose, a broadcast', async () => {
    const g = () => new lr.Generator(8);
    const full = Array.from(await lr.rand([4, 6], { generator: g() }).data());
    const t = await lr.rand([4, 6], { generator: g() }).transpose(0, 1).add(0).data();
    expect(Array.from(t)).toEqual(
      Array.from({ length: 24 }, (_, i) => full[(i % 4) * 6 + Math.floor(i / 4)]),
    );
    const s = await lr.rand([4, 6], { generator: g() }).slice(1, 2, 5).mul(1).data();
    expect(Array.from(s)).toEqual(full.filter((_, i) => i % 6 >= 2 && i % 6 < 5));
    const b = await lr.rand([4, 1], { generator: g() }).expand([4, 3]).add(0).data();
    const col = Array.from(await lr.rand([4, 1], { generator: g() }).data());
    expect(Array.from(b)).toEqual(col.flatMap((v) => [v, v, v]));
  });

  it('uniform(low, high) and randn(mean, std) map the same draws', async () => {
    const u = await lr.rand([64], { generator: new lr.Generator(2) }).data();
    const w = await lr.uniform([64], -2, 3, { generator: new lr.Generator(2) }).data();
    for (let i = 0; i < 64; i++) expect(w[i]).toBe(Math.fround(-2 + Math.fround(5 * u[i])));
    const z = await lr.randn([64], { generator: new lr.Generator(2) }).data();
    const y = await lr.randn([64], { generator: new lr.Generator(2), mean: 1, std: 2 }).data();
    for (let i = 0; i < 64; i++) expect(y[i]).toBe(Math.fround(1 + Math.fround(2 * z[i])));
  });

  it('a consumer computes the draw inside its own kernel (no upload, one program)', () => {
    const x = lr.ones([5]);
    const y = x.mul(lr.rand([5], { generator: new lr.Generator(1) }).ge(0.5));
    const program = lr.pendingProgram(y.storage);
    expect(program).not.toBeNull();
    // the draw is a random node of y's program tree (inlined when y is computed)
    lr.realize(y.storage);
    expect(lr.pendingProgram(y.storage)).toBeNull();
  });

  it('refuses shapes past 2^31 − 1 elements and bad moments', () => {
    expect(() => lr.rand([2 ** 16, 2 ** 16])).toThrow(
      /^rand: a random tensor holds at most 2147483647 elements/,
    );
    expect(() => lr.randn([2], { std: Number.NaN })).toThrow(/^randn: mean and std must be finite/);
  });
});
