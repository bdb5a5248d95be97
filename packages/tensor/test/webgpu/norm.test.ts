import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { refNorm, worst } from '../norm-reference.js';
import { initWebGPU } from './helpers.js';

/**
 * The WebGPU norm kernels against the CPU reference: forward over shapes around the workgroup
 * size (256), the residual add as the prologue (one dispatch), and the gradient kernels against
 * the CPU's on the same inputs.
 */
const skip = await initWebGPU();

async function dispatches(fn: () => Promise<unknown>): Promise<number> {
  await lr.getBackend('webgpu').flush?.();
  const before = lr.webgpuStats()!.dispatches;
  await fn();
  return lr.webgpuStats()!.dispatches - before;
}

const SHAPES: [number, number][] = [
  [1, 1],
  [3, 7],
  [37, 300],
  [5, 256],
  [4, 257],
  [2, 1000],
];

describe.skipIf(skip !== null)(`fused norms on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('layerNorm and rmsNorm match float64 loops, with and without weight/bias', async () => {
    let seed = 0;
    for (const [rows, cols] of SHAPES) {
      for (const kind of ['layer', 'rms'] as const) {
        for (const affine of [false, true]) {
          lr.manualSeed(seed++);
          const x = lr.randn([rows, cols]).mul(2).add(3);
          const w = affine ? lr.randn([cols]) : null;
          const b = affine && kind === 'layer' ? lr.randn([cols]) : null;
          const [xg, wg, bg] = await Promise.all([x, w, b].map((t) => t?.to('webgpu')));
          const y = kind === 'layer' ? lr.layerNorm(xg!, [cols], wg, bg) : lr.rmsNorm(xg!, [cols], wg, 1e-5);
          const ref = refNorm(
            kind,
            await x.data(),
            rows,
            cols,
            w && (await w.data()),
            b && (await b.data()),
            1e-5,
          );
          const e = worst(await y.data(), ref, 1e-4, 1e-4);
          expect(e, `${kind} ${rows}x${cols} affine=${affine}`).toBeLessThanOrEqual(1);
          lr.dispose(...[x, w, b, xg, wg, bg, y].filter((t): t is lr.Tensor => t !== null));
        }
      }
    }
  });

  it('layerNorm(x + attn) is one dispatch; its gradient kernels match the CPU', async () => {
    lr.manualSeed(7);
    const rows = 6;
    const cols = 300;
    const cpu = {
      x: lr.randn([rows, cols]),
      attn: lr.randn([rows, cols]),
      g: lr.randn([rows, cols]),
      w: lr.randn([cols]),
    };
    const gpu = {
      x: await cpu.x.to('webgpu'),
      attn: await cpu.attn.to('webgpu'),
      g: await cpu.g.to('webgpu'),
      w: await cpu.w.to('webgpu'),
    };
    let y: lr.Tensor | null = null;
    const used = await dispatches(async () => {
      y = lr.layerNorm(gpu.x.add(gpu.attn), [cols], gpu.w);
      lr.realize(y.storage);
    });
    expect(used).toBe(1);
    const sum = cpu.x.add(cpu.attn);
    const ref = refNorm('layer', await sum.data(), rows, cols, await cpu.w.data(), null, 1e-5);
    expect(worst(await y!.data(), ref, 1e-4, 1e-4)).toBeLessThanOrEqual(1);
    for (const kind of ['layer', 'rms'] as const) {
      // statistics from the CPU's forward, then the same backward on both devices
      const stats = (t: typeof cpu) => {
        const xs = t.x.add(t.attn);
        const m = xs.mean(-1);
        const d = kind === 'layer' ? xs.sub(m.reshape([rows, 1])) : xs;
        const r = d.square().mean(-1).add(1e-5).rsqrt();
        return { xs, m, r };
      };
      const c = stats(cpu);
      const gs = { xs: await c.xs.to('webgpu'), m: await c.m.to('webgpu'), r: await c.r.to('webgpu') };
      const needs = { input: true, weight: true, bias: true };
      const mean = (m: lr.Tensor) => (kind === 'layer' ? m : null);
      const want = lr.normBackward(kind, cpu.g, c.xs, [cols], cpu.w, mean(c.m), c.r, needs);
      let got: lr.NormGrads | null = null;
      const bwd = await dispatches(async () => {
        // x is a lazy add: the prologue of both gradient kernels
        got = lr.normBackward(kind, gpu.g, gpu.x.add(gpu.attn), [cols], gpu.w, mean(gs.m), gs.r, needs);
        for (const t of [got.input, got.weight, got.bias]) if (t) await t.data();
      });
      // dx; partial column sums, and one reduction of them per parameter
      expect(bwd).toBe(kind === 'layer' ? 4 : 3);
      const g = got as unknown as lr.NormGrads;
      expect(worst(await g.input!.data(), await want.input!.data(), 1e-4, 1e-3)).toBeLessThanOrEqual(1);
      expect(worst(await g.weight!.data(), await want.weight!.data(), 1e-4, 1e-3)).toBeLessThanOrEqual(1);
      if (kind === 'layer')
        expect(worst(await g.bias!.data(), await want.bias!.data(), 1e-4, 1e-3)).toBeLessThanOrEqual(1);
    }
  });
});
