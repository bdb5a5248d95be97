import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { setAttentionKernels } from '../../src/backends/webgpu/attention-shared.js';
import * as lr from '../../src/index.js';
import {
  attentionInputs,
  type AttentionCase as Case,
  composedAttention,
  maxDiff,
} from '../attention-reference.js';
import { initWebGPU } from './helpers.js';

/**
 * The WebGPU flash-attention forward kernel against the composed ops on the CPU: shapes around the tiles (L, S not multiples of 32/64), causal, GQA,
 * bool and float masks with fully masked rows, decode (L = 1), head dims up to 128, strided q/k/v.
 * The backward kernels are checked in packages/autograd/test/attention-webgpu.test.ts.
 */
const skip = await initWebGPU();

afterAll(() => {
  if (!skip) lr.setDefaultDevice('cpu');
});

// few cases: each distinct (E, Ev, mask, causal) compiles a pipeline, ~15 s on lavapipe
const CASES: Case[] = [
  { b: 2, hkv: 1, g: 2, l: 70, s: 70, e: 16, ev: 16, causal: true, mask: 'none' },
  { b: 1, hkv: 2, g: 4, l: 33, s: 45, e: 13, ev: 5, causal: false, mask: 'bool' },
  // GPT-2's head size over several tiles: blocks wholly below the diagonal skip the mask tests
  { b: 1, hkv: 1, g: 1, l: 150, s: 150, e: 64, ev: 64, causal: true, mask: 'none' },
  { b: 1, hkv: 1, g: 2, l: 1, s: 130, e: 128, ev: 128, causal: false, mask: 'float' },
  // decode (L = 1, keys split in chunks): causal leaves key 0 only (whole chunks masked); bool mask
  { b: 2, hkv: 2, g: 2, l: 1, s: 1000, e: 64, ev: 64, causal: true, mask: 'none' },
  { b: 1, hkv: 1, g: 1, l: 1, s: 300, e: 16, ev: 8, causal: false, mask: 'bool' },
];

const inputs = (c: Case, seed: number) => attentionInputs(c, seed, { boolCut: 0.4, floatCut: 0.7 });

describe.skipIf(skip !== null)(`flash attention on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('forward kernel matches the composed ops on the CPU', async () => {
    let seed = 0;
    for (const c of CASES) {
      const { q, k, v, mask } = inputs(c, seed++);
      const ref = composedAttention(q, k, v, { causal: c.causal, mask });
      const [qg, kg, vg, mg] = await Promise.all([q, k, v, mask].map((t) => t?.to('webgpu') ?? null));
      const got = lr.scaledDotProductAttention(qg!, kg!, vg!, {
        causal: c.causal,
        mask: mg,
        enableGqa: c.g > 1,
      });
      expect(maxDiff(await got.data(), await ref.data()), JSON.stringify(c)).toBeLessThan(2e-5);
    }
  }, 300_000);

  it('the plain forward (no subgroups) matches too; the backend says when subgroups are used', async () => {
    const backend = lr.getBackend('webgpu');
    const has = lr.webgpuDevice()?.features.has('subgroups') ?? false;
    expect(backend.description.includes('subgroups')).toBe(has);
    const before = setAttentionKernels({ subgroups: 'off' });
    try {
      for (const [i, c] of [CASES[0], CASES[2]].entries()) {
        const { q, k, v } = inputs(c, i);
        const ref = composedAttention(q, k, v, { causal: c.causal });
        const [qg, kg, vg] = await Promise.all([q, k, v].map((t) => t.to('webgpu')));
        const got = lr.scaledDotProductAttention(qg, kg, vg, { causal: c.causal, enableGqa: c.g > 1 });
        expect(maxDiff(await got.data(), await ref.data()), JSON.stringify(c)).toBeLessThan(2e-5);
      }
    } finally {
      setAttentionKernels(before);
    }
  }, 300_000);

  it('forward kernel: random shapes around the tiles, causal or not, GQA 1/2/4 (property)', async () => {
    // one head size, so the pipelines of the cases above serve (shapes are uniforms, not baked in)
    const arb = fc.record({
      b: fc.integer({ min: 1, max: 2 }),
      hkv: fc.integer({ min: 1, max: 2 }),
      g: fc.constantFrom(1, 2, 4),
      l: fc.constantFrom(1, 3, 17, 33, 65, 97),
      s: fc.constantFrom(1, 5, 31, 64, 70, 129),
      causal: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(arb, fc.integer({ min: 0, max: 1000 }), async (r, seed) => {
        const c: Case = { ...r, e: 16, ev: 16, mask: 'none' };
        const { q, k, v } = inputs(c, seed);
        const ref = composedAttention(q, k, v, { causal: c.causal });
        const [qg, kg, vg] = await Promise.all([q, k, v].map((t) => t.to('webgpu')));
        const got = lr.scaledDotProductAttention(qg, kg, vg, { causal: c.causal, enableGqa: c.g > 1 });
        const d = maxDiff(await got.data(), await ref.data());
        lr.dispose(qg, kg, vg, got);
        expect(d, JSON.stringify(c)).toBeLessThan(2e-5); // NaN rows must be NaN in both (maxDiff)
      }),
      { numRuns: 8, seed: 11 },
    );
  }, 300_000);

  it('reads strided GPT-2 heads on the GPU', async () => {
    const [b, t, nh, hs] = [2, 45, 3, 64];
    const c = nh * hs;
    lr.manualSeed(3);
    const qkv = lr.randn([b, t, 3 * c]);
    const heads = (x: lr.Tensor) => x.split(c, 2).map((y) => y.reshape([b, t, nh, hs]).transpose(1, 2));
    const [q, k, v] = heads(qkv);
    const [qg, kg, vg] = heads(await qkv.to('webgpu'));
    const want = lr.scaledDotProductAttention(q, k, v, { causal: true });
    const got = lr.scaledDotProductAttention(qg, kg, vg, { causal: true });
    expect(maxDiff(await got.data(), await want.data())).toBeLessThan(1e-5);
  }, 120_000);
});
