import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../src/index.js';
import {
  attentionInputs,
  type AttentionCase as Case,
  composedAttention,
  maxDiff,
} from './attention-reference.js';

/**
 * The fused attention op on the CPU against the composed ops (matmul, where, softmax, matmul):
 * random shapes with L and S around the GPU tiles (not multiples of them), causal or not, GQA
 * ratios 1, 2, 4, bool and float masks (with fully masked rows), decode (L = 1), strided inputs.
 */

const inputs = (c: Case, seed: number) => attentionInputs(c, seed, { boolCut: 0.3, floatCut: 0.8 });

async function check(c: Case, seed: number): Promise<number> {
  const { q, k, v, mask } = inputs(c, seed);
  const fused = lr.scaledDotProductAttention(q, k, v, { causal: c.causal, mask, enableGqa: c.g > 1 });
  const ref = composedAttention(q, k, v, { causal: c.causal, mask });
  expect(fused.shape).toEqual(ref.shape);
  return maxDiff(await fused.data(), await ref.data());
}

const caseArb = fc.record({
  b: fc.integer({ min: 1, max: 2 }),
  hkv: fc.integer({ min: 1, max: 2 }),
  g: fc.constantFrom(1, 2, 4),
  l: fc.constantFrom(1, 3, 17, 33, 65),
  s: fc.constantFrom(1, 5, 31, 40, 70),
  e: fc.constantFrom(4, 8, 13),
  ev: fc.constantFrom(3, 8),
  causal: fc.boolean(),
  mask: fc.constantFrom('none', 'bool', 'float'),
}) as fc.Arbitrary<Case>;

describe('fused scaledDotProductAttention (cpu)', () => {
  it('equals the composed ops over random shapes, masks, causal and GQA', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, fc.integer({ min: 0, max: 1000 }), async (c, seed) => {
        expect(await check(c, seed)).toBeLessThan(2e-5);
      }),
      { numRuns: 40, seed: 7 },
    );
  });

  it('gives NaN on fully masked rows, as the composed softmax', async () => {
    const q = lr.randn([1, 1, 3, 4]);
    const mask = lr.tensor(
      [
        [true, true],
        [false, false],
        [true, false],
      ],
      { dtype: 'bool' },
    );
    const fused = await lr.scaledDotProductAttention(q, q.slice(2, 0, 2), q.slice(2, 0, 2), { mask }).data();
    const ref = await composedAttention(q, q.slice(2, 0, 2), q.slice(2, 0, 2), { mask }).data();
    expect(Number.isNaN(ref[4]) && Number.isNaN(fused[4])).toBe(true);
    expect(Number.isNaN(fused[0])).toBe(false);
    expect(maxDiff(fused, ref)).toBeLessThan(1e-6);
  });

  it('reads GPT-2 style heads through strides (transposed views of one [B, T, 3C] projection)', async () => {
    const [b, t, nh, hs] = [2, 9, 3, 4];
    const c = nh * hs;
    const qkv = lr.randn([b, t, 3 * c]);
    const [q, k, v] = qkv.split(c, 2).map((x) => x.reshape([b, t, nh, hs]).transpose(1, 2));
    expect(q.isContiguous()).toBe(false);
    const fused = lr.scaledDotProductAttention(q, k, v, { isCausal: true });
    const ref = composedAttention(q.contiguous(), k.contiguous(), v.contiguous(), { causal: true });
    expect(maxDiff(await fused.data(), await ref.data())).toBeLessThan(2e-6);
  });

  it('decodes one query over many keys (L = 1), with a broadcast [S] mask', async () => {
    const q = lr.randn([2, 4, 1, 16]);
    const k = lr.randn([2, 2, 300, 16]);
    const mask = lr.arange(300).lt(250);
    const fused = lr.scaledDotProductAttention(q, k, k, { enableGqa: true, mask });
    const ref = composedAttention(q, k, k, { mask: mask.reshape([1, 1, 1, 300]) });
    expect(maxDiff(await fused.data(), await ref.data())).toBeLessThan(2e-6);
  });

  it('broadcasts batch dims and takes rank-3 inputs', async () => {
    const q = lr.randn([3, 5, 8]);
    const k = lr.randn([1, 6, 8]);
    const out = lr.scaledDotProductAttention(q, k, k, { scale: 0.3 });
    const ref = composedAttention(
      q.unsqueeze(0),
      k.expand([3, 6, 8]).unsqueeze(0),
      k.expand([3, 6, 8]).unsqueeze(0),
      { scale: 0.3 },
    );
    expect(out.shape).toEqual([3, 5, 8]);
    expect(maxDiff(await out.data(), await ref.data())).toBeLessThan(2e-6);
  });

  it('refuses bad shapes, dtypes and GQA head counts with clear errors', () => {
    const q = lr.randn([1, 4, 3, 8]);
    expect(() => lr.scaledDotProductAttention(q, lr.randn([1, 4, 3, 7]), q)).toThrow(
      /expected q \[\.\.\., L, E\]/,
    );
    expect(() =>
      lr.scaledDotProductAttention(q, lr.randn([1, 3, 3, 8]), lr.randn([1, 3, 3, 8]), { enableGqa: true }),
    ).toThrow(/multiple of kv heads/);
    expect(() =>
      lr.scaledDotProductAttention(q, q, q, { mask: lr.ones([3, 3], { dtype: 'int32' }) }),
    ).toThrow(/bool .* or float32/);
    expect(() => lr.scaledDotProductAttention(q, q, q, { mask: lr.ones([2, 3]) })).toThrow(
      /cannot be broadcast/,
    );
  });
});
