import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { attentionInputs, type AttentionCase as Case, maxDiff } from '../attention-reference.js';
import { firstKey, naiveUniform } from '../philox-reference.js';
import { initWebGPU } from './helpers.js';

/**
 * The device generator on WebGPU: the WGSL Philox gives the CPU's bits (uniform draws and
 * dropout masks equal bit for bit, read through views too), normal draws agree to float32
 * precision, a dropout multiply is one dispatch, and attention with dropout equals the CPU
 * kernels for the same generator seed (its gradients: packages/autograd/test/attention-dropout.test.ts). Small shapes: lavapipe is slow.
 */
const skip = await initWebGPU();

describe.skipIf(skip !== null)(`device random numbers on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const device = 'webgpu';

  it('rand: the same bits as the CPU and the naive Philox, through a transpose and a broadcast', async () => {
    const cpu = await lr.rand([37, 5], { generator: new lr.Generator(3) }).data();
    const gpu = await lr.rand([37, 5], { generator: new lr.Generator(3), device }).data();
    expect(Array.from(gpu)).toEqual(Array.from(cpu));
    const key = firstKey(3);
    for (const i of [0, 1, 2, 3, 100, 184]) expect(cpu[i]).toBe(naiveUniform(i, key));
    const viewed = (d: lr.Device) =>
      lr
        .rand([6, 1, 7], { generator: new lr.Generator(4), device: d })
        .expand([6, 3, 7])
        .transpose(0, 2)
        .add(0)
        .data();
    expect(Array.from(await viewed(device))).toEqual(Array.from(await viewed('cpu')));
  });

  it('dropout masks are equal bit for bit; the multiply is one dispatch', async () => {
    const x = lr.randn([9, 33]);
    const xg = await x.to(device);
    const masked = (t: lr.Tensor) =>
      t.mul(
        lr.where(lr.rand(t.shape, { generator: new lr.Generator(8), device: t.device }).ge(0.3), 1 / 0.7, 0),
      );
    const want = await masked(x).data();
    await lr.getBackend(device).flush?.();
    const before = lr.webgpuStats()!.dispatches;
    const y = masked(xg);
    lr.realize(y.storage);
    expect(lr.webgpuStats()!.dispatches - before).toBe(1);
    expect(Array.from(await y.data())).toEqual(Array.from(want));
    expect(want.filter((v) => v === 0).length).toBeGreaterThan(50);
  });

  it('randn agrees with the CPU to float32 precision', async () => {
    const cpu = await lr.randn([500], { generator: new lr.Generator(5) }).data();
    const gpu = await lr.randn([500], { generator: new lr.Generator(5), device }).data();
    expect(maxDiff(gpu, cpu)).toBeLessThan(1e-5);
  });

  it('attention with dropout: the forward equals the CPU (causal, GQA, bool mask, L and S off the tiles)', async () => {
    const cases: (Case & { p: number })[] = [
      { b: 1, hkv: 1, g: 2, l: 19, s: 19, e: 8, ev: 8, causal: true, mask: 'none', p: 0.2 },
      { b: 2, hkv: 1, g: 1, l: 9, s: 21, e: 8, ev: 4, causal: false, mask: 'bool', p: 0.5 },
    ];
    let seed = 0;
    for (const c of cases) {
      const { q, k, v, mask } = attentionInputs(c, seed++, { boolCut: 0.3, floatCut: 0.8 });
      const run = (xs: lr.Tensor[], m: lr.Tensor | null) =>
        lr
          .scaledDotProductAttention(xs[0], xs[1], xs[2], {
            causal: c.causal,
            mask: m,
            enableGqa: c.g > 1,
            dropoutP: c.p,
            generator: new lr.Generator(40 + seed),
          })
          .data();
      const want = await run([q, k, v], mask);
      const onGpu = await Promise.all([q, k, v].map((t) => t.to(device)));
      const got = await run(onGpu, mask && (await mask.to(device)));
      expect(maxDiff(got, want), JSON.stringify(c)).toBeLessThan(2e-5);
      const plain = await lr
        .scaledDotProductAttention(q, k, v, { causal: c.causal, mask, enableGqa: c.g > 1 })
        .data();
      expect(maxDiff(plain, want)).toBeGreaterThan(1e-3);
    }
  }, 300_000);
});
