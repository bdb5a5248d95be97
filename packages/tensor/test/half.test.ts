import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../src/index.js';
import { maxRelErr, refMatmul, values } from './quant-reference.js';

/**
 * 16-bit frozen weights (issue #17 item 2): f16 / bf16 rounding against references built here
 * from the IEEE definitions (every f16 value from sign·2^(e−15)·(1 + f/1024), the nearest found by
 * search with ties to the even pattern; bf16 as the two float32s bracketing x with 16 zero low
 * bits), the packing, and the 16-bit matmul against float64 loops over the decoded matrix.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fromBits = (b: number): number => {
  u32[0] = b >>> 0;
  return f32[0];
};
const bitsOf = (x: number): number => {
  f32[0] = x;
  return u32[0];
};

/** f16 value of a pattern by the IEEE formula (finite patterns only). */
function ieeeHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const f = h & 1023;
  return e === 0 ? s * 2 ** -14 * (f / 1024) : s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Non-negative f16 values 0…65504 by pattern 0…0x7bff, and 2^16 for 0x7c00 (where rounding overflows). */
const HALF_POS = Float64Array.from({ length: 0x7c01 }, (_, h) => (h === 0x7c00 ? 65536 : ieeeHalf(h)));

/** The f16 pattern nearest to the float32 x: a search over HALF_POS, ties to the even pattern. */
function refF16(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65536) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7c00;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (HALF_POS[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - HALF_POS[lo];
  const dh = HALF_POS[hi] - a;
  const pick = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
  return sign | pick;
}

/** The bf16 pattern nearest to the float32 x: of the two bracketing values with zero low halves, ties to even. */
function refBf16(x: number): number {
  const b = bitsOf(x);
  const down = b & 0xffff0000;
  const lo = fromBits(down);
  const up = down + 0x10000; // the next magnitude (into Infinity past the largest)
  const hi = fromBits(up);
  const dl = Math.abs(x - lo);
  const dh = Math.abs(hi - x);
  const pick = dl < dh ? down : dh < dl ? up : ((down >>> 16) & 1) === 0 ? down : up;
  return (pick >>> 16) & 0xffff;
}

/** float32 values across f16's range: random patterns, midpoints of neighbours and their float32 neighbours. */
function halfProbes(seed: number): Float32Array {
  const g = new lr.Generator(seed);
  const out: number[] = [
    0,
    -0,
    65504,
    65519.99,
    65520,
    -65520,
    2 ** -24,
    2 ** -25,
    2 ** -25 * 1.0001,
    2 ** -26,
    1e-30,
  ];
  for (let i = 0; i < 4000; i++) {
    const h = Math.floor(g.nextFloat() * 0x7c00);
    const mid = Math.fround((ieeeHalf(h) + HALF_POS[h + 1]) / 2); // exact: 12 significant bits
    const sign = g.nextFloat() < 0.5 ? -1 : 1;
    out.push(sign * mid, sign * fromBits(bitsOf(mid) + 1), sign * fromBits(bitsOf(mid) - 1));
    // a random float32 with an exponent between 2^−26 and 2^16
    out.push(
      sign * fromBits(((Math.floor(g.nextFloat() * 43) + 101) << 23) | Math.floor(g.nextFloat() * 2 ** 23)),
    );
  }
  return Float32Array.from(out);
}

describe('f16 and bf16 conversion', () => {
  it('every f16 pattern decodes to its IEEE value and encodes back to itself; NaN stays NaN', () => {
    for (let h = 0; h < 65536; h++) {
      const v = lr.f16Value(h);
      const e = (h >> 10) & 31;
      if (e === 31 && (h & 1023) !== 0) {
        expect(Number.isNaN(v)).toBe(true);
        expect(Number.isNaN(lr.f16Value(lr.f16Bits(v)))).toBe(true);
        continue;
      }
      const want = e === 31 ? (h & 0x8000 ? -Infinity : Infinity) : ieeeHalf(h);
      if (!Object.is(v, want)) expect([h, v]).toEqual([h, want]);
      if (lr.f16Bits(v) !== h) expect([h, lr.f16Bits(v)]).toEqual([h, h]);
    }
  });

  it('float32 → f16 rounds to nearest, ties to even (midpoints, their neighbours, subnormals, overflow)', () => {
    const xs = halfProbes(3);
    let ties = 0;
    for (const x of xs) {
      const got = lr.f16Bits(x);
      const want = refF16(x);
      if (got !== want) expect([x, got.toString(16)]).toEqual([x, want.toString(16)]);
      if (x === Math.fround((ieeeHalf(want & 0x7fff) + ieeeHalf((want & 0x7fff) ^ 1)) / 2)) ties++;
    }
    expect(ties).toBeGreaterThan(100); // the probes did hit exact ties
    expect(lr.f16Bits(65520)).toBe(0x7c00); // a tie between 65504 and 2^16: the even pattern, Infinity
    expect(lr.f16Bits(2 ** -25)).toBe(0); // a tie between 0 and 2^−24
    expect(lr.f16Bits(3 * 2 ** -25)).toBe(2); // a tie between 1 and 2 (×2^−24): to 2
    expect(lr.f16Bits(-(1 + 2 ** -11))).toBe(0xbc00); // 1 + half an ulp: to 1.0
    expect(lr.f16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it('every bf16 pattern round-trips; float32 → bf16 rounds to nearest, ties to even', () => {
    for (let h = 0; h < 65536; h++) {
      const v = lr.bf16Value(h);
      expect(bitsOf(v)).toBe((h << 16) >>> 0);
      if (!Number.isNaN(v) && lr.bf16Bits(v) !== h) expect([h, lr.bf16Bits(v)]).toEqual([h, h]);
    }
    const g = new lr.Generator(5);
    for (let i = 0; i < 20000; i++) {
      const hi = Math.floor(g.nextFloat() * 0x7f7f) | (g.nextFloat() < 0.5 ? 0x8000 : 0);
      // the low half: a tie (0x8000), next to one, or anything
      const low = [0x8000, 0x7fff, 0x8001, Math.floor(g.nextFloat() * 0x10000)][i % 4];
      const x = fromBits((hi << 16) | low);
      expect(lr.bf16Bits(x)).toBe(refBf16(x));
    }
    expect(lr.bf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(lr.bf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(lr.bf16Bits(fromBits(0x7f7fffff))).toBe(0x7f80); // float32's largest rounds past bf16's
    expect(Number.isNaN(lr.bf16Value(lr.bf16Bits(Number.NaN)))).toBe(true);
  });
});

describe('16-bit weights', () => {
  it('quantizeData packs two patterns a word (odd cols pad the last word) and dequantizes exactly', () => {
    const data = Float32Array.from([1, -2, 0.1, 65504, 3e-6, -0]);
    const q = lr.quantizeData(data, 2, 3, { bits: 'f16' });
    expect(q.blockSize).toBe(3);
    expect(q.scales.length).toBe(0);
    const h = Array.from(data, (x) => refF16(x));
    expect(Array.from(q.codes, (w) => w >>> 0)).toEqual([
      (h[0] | (h[1] << 16)) >>> 0,
      h[2],
      (h[3] | (h[4] << 16)) >>> 0,
      h[5],
    ]);
    expect(Array.from(lr.dequantizeData(q))).toEqual(h.map((b) => lr.f16Value(b)));
    const b = lr.quantizeData(data, 3, 2, { bits: 'bf16' });
    expect(Array.from(lr.dequantizeData(b))).toEqual(Array.from(data, (x) => lr.bf16Value(refBf16(x))));
    // values already 16-bit come back bit for bit
    const exact = Float32Array.from({ length: 70 }, (_, i) => lr.f16Value(i * 937));
    expect(Array.from(lr.dequantizeData(lr.quantizeData(exact, 7, 10, { bits: 'f16' })))).toEqual(
      Array.from(exact),
    );
    expect(lr.halfData('bf16', Uint16Array.from([0x3f80, 0xc040]), 1, 2).codes[0] >>> 0).toBe(0xc0403f80);
  });

  it('refuses a finite value past f16 range and double quantization of a 16-bit format', () => {
    expect(() => lr.quantizeData(Float32Array.from([1, 70000]), 1, 2, { bits: 'f16' })).toThrow(
      /value at \[0, 1\] is 70000, beyond f16's range/,
    );
    expect(
      Array.from(lr.dequantizeData(lr.quantizeData(Float32Array.from([70000]), 1, 1, { bits: 'bf16' }))),
    ).toEqual([lr.bf16Value(refBf16(70000))]);
    expect(() => lr.QuantizedWeight.quantizeNow(lr.ones([2, 2]), { bits: 'f16', doubleQuant: true })).toThrow(
      /f16 has no scales to double-quantize/,
    );
  });

  it('a QuantizedWeight of f16 takes half the bytes, and memory().quantized counts it under its format', async () => {
    const before = lr.memory().quantized.f16?.bytes ?? 0;
    const q = await lr.QuantizedWeight.quantize(lr.randn([8, 64]), { bits: 'f16' });
    expect(q.bytes).toBe(8 * 64 * 2);
    expect(q.f32Bytes).toBe(8 * 64 * 4);
    expect(lr.memory().quantized.f16?.bytes).toBe(before + 1024);
    expect(lr.quantizedMemory().formats.f16?.f32Bytes).toBeGreaterThanOrEqual(2048);
    q.dispose();
    expect(lr.memory().quantized.f16?.bytes ?? 0).toBe(before);
  });

  it('quantizedMatmul over f16/bf16 equals x·W in float64 on the decoded weights (property, odd shapes)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          rows: fc.integer({ min: 1, max: 150 }),
          cols: fc.integer({ min: 1, max: 150 }),
          m: fc.integer({ min: 1, max: 7 }),
          bits: fc.constantFrom<lr.HalfFormat>('f16', 'bf16'),
          transpose: fc.boolean(),
          seed: fc.nat(10000),
        }),
        async (c) => {
          const q = lr.quantizeData(values(c.rows * c.cols, c.seed, 0.5), c.rows, c.cols, c);
          const w = lr.QuantizedWeight.fromData(q, 'cpu');
          const deq = lr.dequantizeData(q);
          const d = lr.dequantize(w);
          expect(Array.from((await d.data()) as Float32Array)).toEqual(Array.from(deq));
          const k = c.transpose ? c.cols : c.rows;
          const xv = values(c.m * k, c.seed + 1);
          const y = lr.quantizedMatmul(lr.tensor(xv, { shape: [c.m, k] }), w, { transpose: c.transpose });
          const want = refMatmul(deq, c.rows, c.cols, xv, c.m, c.transpose);
          // float32 accumulation of k products of magnitude ≤ 0.5
          expect(maxRelErr((await y.data()) as Float32Array, want)).toBeLessThan(k * 2 ** -22);
          d.dispose();
          y.dispose();
          w.dispose();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('quantizedEmbedding gives the decoded rows at the ids (f16, bf16, nf4, int8), exactly', async () => {
    const [rows, cols] = [13, 37];
    const idv = [12, 0, 5, 5, 3, 12];
    for (const options of [
      { bits: 'f16' },
      { bits: 'bf16' },
      { bits: 'nf4', blockSize: 16 },
      { bits: 'int8', blockSize: 'channel' },
    ] as const) {
      const q = lr.quantizeData(values(rows * cols, 31), rows, cols, options);
      const deq = lr.dequantizeData(q);
      const w = lr.QuantizedWeight.fromData(q, 'cpu');
      const ids = lr.tensor(idv, { dtype: 'int32', shape: [2, 3] });
      const e = lr.quantizedEmbedding(w, ids);
      expect(e.shape).toEqual([2, 3, cols]);
      const want = idv.flatMap((r) => Array.from(deq.subarray(r * cols, (r + 1) * cols)));
      expect(Array.from((await e.data()) as Float32Array)).toEqual(want);
      e.dispose();
      ids.dispose();
      w.dispose();
    }
    const dq = lr.QuantizedWeight.fromData(
      lr.quantizeData(values(64, 1), 2, 32, { bits: 'nf4', doubleQuant: true }),
    );
    expect(() => lr.quantizedEmbedding(dq, lr.tensor([0], { dtype: 'int32' }))).toThrow(
      /quantizedEmbedding: a double-quantized nf4 table \[2,32\] cannot be gathered by rows/,
    );
    dq.dispose();
  });
});
