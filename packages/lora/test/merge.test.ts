import { Conv1D, Linear } from '@lowrank/nn';
import { dispose, Generator, randint, tidy } from '@lowrank/tensor';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyLora, LoraFusedLinear, LoraLinear } from '../src/index.js';
import { devices, maxAbs, maxAbsDiff, TinyNet } from './helpers.js';

/**
 * Merge equivalence. Tolerance (float32): |merged − unmerged| ≤ 1e-5 + 1e-5·max|y| on outputs,
 * and merge→unmerge restores every weight to within 1e-6·(1 + max|W| + max|ΔW|) — W + ΔW − ΔW
 * is exact up to one rounding of each add.
 */
const { available, webgpuSkipReason } = await devices();
const TARGETS = ['emb', 'fc', 'c_attn', 'c_proj'] as const;

const arbCase = fc.record({
  dim: fc.integer({ min: 1, max: 9 }),
  hidden: fc.integer({ min: 1, max: 9 }),
  slice: fc.integer({ min: 1, max: 4 }),
  r: fc.integer({ min: 1, max: 6 }),
  alpha: fc.double({ min: 0.5, max: 64, noNaN: true }),
  rslora: fc.boolean(),
  targets: fc.subarray([...TARGETS], { minLength: 1 }),
  fused: fc.option(
    fc.tuple(fc.boolean(), fc.boolean(), fc.boolean()).filter((t) => t.some(Boolean)),
    { nil: undefined },
  ),
  batch: fc.integer({ min: 1, max: 3 }),
  seq: fc.integer({ min: 1, max: 4 }),
  seed: fc.nat(1000),
});

for (const device of available) {
  describe(`merge equivalence on ${device}`, () => {
    it('merged ≡ unmerged, merge→unmerge restores W, ΔW = 0 at init (property)', async () => {
      await fc.assert(
        fc.asyncProperty(arbCase, async (c) => {
          const net = await new TinyNet(7, c.dim, c.hidden, c.slice, c.seed).to(device);
          net.eval();
          const ids = randint(0, 7, [c.batch, c.seq], { generator: new Generator(c.seed), device });
          const base = net.forward(ids);
          const before = await Promise.all(TARGETS.map((t) => net.getParameter(`${t}.weight`).clone()));
          // PEFT's default init: B = 0 (A = 0 for embeddings), so ΔW = 0 and outputs are unchanged.
          const zeroInit = applyLora(net, {
            r: c.r,
            loraAlpha: c.alpha,
            targetModules: c.targets,
            seed: c.seed,
          });
          const atInit = net.forward(ids);
          expect(await maxAbsDiff(atInit, base)).toBe(0);
          zeroInit.unload();
          const lora = applyLora(net, {
            r: c.r,
            loraAlpha: c.alpha,
            useRslora: c.rslora,
            targetModules: c.targets,
            initLoraWeights: false,
            fusedSlices: c.fused ? { c_attn: c.fused } : undefined,
            seed: c.seed,
          });
          const unmerged = net.forward(ids);
          expect(await maxAbsDiff(unmerged, base)).toBeGreaterThan(0); // the adapter does something
          lora.merge();
          const merged = net.forward(ids);
          const tol = 1e-5 + 1e-5 * (await maxAbs(unmerged));
          expect(await maxAbsDiff(merged, unmerged)).toBeLessThanOrEqual(tol);
          lora.unmerge();
          for (const [i, t] of TARGETS.entries()) {
            const layer = lora.layers.get(t);
            const w = net.getParameter(layer ? `${t}.base_layer.weight` : `${t}.weight`);
            const dw = layer ? tidy(() => layer.deltaWeight('default')) : null;
            const bound = 1e-6 * (1 + (await maxAbs(before[i])) + (dw ? await maxAbs(dw) : 0));
            expect(await maxAbsDiff(w, before[i])).toBeLessThanOrEqual(bound);
            dw?.dispose();
          }
          dispose(base, atInit, unmerged, merged, ids, before);
          net.dispose();
        }),
        { numRuns: device === 'cpu' ? 40 : 6 },
      );
    });

    it('mergeAndUnload returns a plain model computing the merged function', async () => {
      const net = await new TinyNet().to(device);
      net.eval();
      const ids = randint(0, 11, [2, 3], { generator: new Generator(1), device });
      const lora = applyLora(net, { r: 2, targetModules: ['fc', 'c_attn'], initLoraWeights: false, seed: 3 });
      const y = net.forward(ids);
      const plain = lora.mergeAndUnload();
      expect(plain).toBe(net);
      expect(plain.fc).toBeInstanceOf(Linear);
      expect(plain.c_attn).toBeInstanceOf(Conv1D);
      expect(plain.namedParameters().some(([n]) => n.includes('lora_'))).toBe(false);
      expect(plain.parameters().every((p) => p.requiresGrad)).toBe(true);
      expect(await maxAbsDiff(plain.forward(ids), y)).toBeLessThan(1e-5);
    });
  });
}

if (webgpuSkipReason) {
  describe('merge equivalence on webgpu', () => {
    it.skip(`skipped: WebGPU unavailable (${webgpuSkipReason})`, () => {});
  });
}

describe('training while merged', () => {
  it('is refused: forward in training mode throws until unmerge()', () => {
    const net = new TinyNet();
    const lora = applyLora(net, { r: 2, targetModules: ['fc'] });
    const ids = randint(0, 11, [1, 2]);
    lora.merge();
    net.train();
    expect(() => net.forward(ids)).toThrow(/merged; call unmerge\(\) before training/);
    net.eval();
    expect(() => net.forward(ids)).not.toThrow();
    lora.unmerge();
    net.train();
    expect(() => net.forward(ids)).not.toThrow();
    expect(lora.layers.get('fc')).toBeInstanceOf(LoraLinear);
  });

  it('fused slices leave disabled slices untouched (ΔW rows of k are zero)', async () => {
    const net = new TinyNet();
    const lora = applyLora(net, {
      r: 2,
      targetModules: ['c_attn'],
      fusedSlices: { c_attn: [true, false, true] },
      initLoraWeights: false,
    });
    const layer = lora.layers.get('c_attn') as LoraFusedLinear;
    expect(layer).toBeInstanceOf(LoraFusedLinear);
    const dw = layer.deltaWeight('default'); // Conv1D layout [in, out]
    const rows = (await dw.toArray()) as number[][];
    const s = net.slice;
    for (const row of rows) {
      expect(row.slice(s, 2 * s).every((v) => v === 0)).toBe(true);
      expect(row.slice(0, s).some((v) => v !== 0)).toBe(true);
      expect(row.slice(2 * s).some((v) => v !== 0)).toBe(true);
    }
    expect(layer.factorParams('default').map((t) => t.shape)).toEqual([
      [4, net.hidden],
      [2 * s, 2],
    ]);
  });
});
