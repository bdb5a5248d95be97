import { gradcheck } from '@lowrank/autograd';
import { AdamW, CausalSelfAttention, Dropout, F, Linear } from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { maxDiff } from '../../tensor/test/attention-reference.js';
import { attentionDropFactors, firstKey, naiveUniform } from '../../tensor/test/philox-reference.js';
import { webgpuUnavailable } from './helpers.js';

/**
 * Dropout on the device generator: F.dropout's mask is the naive Philox's for the key drawn
 * from the generator (the same on the CPU and WebGPU, bit for bit) and so is its gradient;
 * attention with dropout passes finite differences on both backends (the mask a pure function of
 * the key, so every evaluation with a fresh generator of one seed drops the same weights), its
 * WebGPU gradients equal the CPU's, and a compiled training step with attention and residual
 * dropout replays the eager steps exactly.
 */

const unavailable = await webgpuUnavailable();

/** The mask F.dropout(·, p) applies to a tensor of n elements under key `key`: 0 or 1/(1 − p). */
function dropoutMask(n: number, key: readonly number[], p: number): number[] {
  return Array.from({ length: n }, (_, i) =>
    naiveUniform(i, key) >= Math.fround(p) ? Math.fround(1 / (1 - p)) : 0,
  );
}

describe('F.dropout on the device generator', () => {
  it('masks with the naive Philox of the drawn key; the gradient is the same mask', async () => {
    const x = lr.randn([7, 9], { requiresGrad: true });
    const y = F.dropout(x, 0.3, true, { generator: new lr.Generator(21) });
    const mask = dropoutMask(63, firstKey(21), 0.3);
    const xs = await x.data();
    expect(Array.from(await y.data())).toEqual(Array.from(xs, (v, i) => Math.fround(v * mask[i])));
    const w = lr.randn([7, 9]);
    y.mul(w).sum().backward();
    const ws = await w.data();
    expect(Array.from(await x.grad!.data())).toEqual(Array.from(ws, (v, i) => Math.fround(v * mask[i])));
    const zeros = mask.filter((m) => m === 0).length;
    expect(zeros).toBeGreaterThan(8);
    expect(zeros).toBeLessThan(32);
  });

  it('nn.Dropout draws from its generator: same seed, same mask; the next call another', async () => {
    const d = new Dropout(0.5, { generator: new lr.Generator(3) });
    const x = lr.ones([64]);
    const a = await d.forward(x).data();
    const b = await d.forward(x).data();
    expect(Array.from(a)).toEqual(dropoutMask(64, firstKey(3), 0.5));
    expect(Array.from(b)).not.toEqual(Array.from(a));
    d.eval();
    expect(d.forward(x)).toBe(x);
  });

  it('attention with dropout passes gradcheck on the CPU (causal, GQA, L = 19)', async () => {
    lr.manualSeed(2);
    const q = lr.randn([1, 4, 19, 4]);
    const k = lr.randn([1, 2, 19, 4]);
    const v = lr.randn([1, 2, 19, 4]);
    const o = { isCausal: true, enableGqa: true, dropoutP: 0.3 };
    const f = (a: lr.Tensor, b: lr.Tensor, c: lr.Tensor) =>
      F.scaledDotProductAttention(a, b, c, { ...o, generator: new lr.Generator(9) });
    const r = await gradcheck(f, [q, k, v], { atol: 2e-3 });
    expect(r.worst).toBeLessThanOrEqual(1);
    // the dropout is real: the output is the composed one with the naive Philox's factors
    const z = attentionDropFactors([1, 4, 19, 19], firstKey(9), 0.3);
    const kx = k.reshape([1, 2, 1, 19, 4]).expand([1, 2, 2, 19, 4]).reshape([1, 4, 19, 4]);
    const vx = v.reshape([1, 2, 1, 19, 4]).expand([1, 2, 2, 19, 4]).reshape([1, 4, 19, 4]);
    const { weights } = F.attentionWithWeights(q, kx, vx, { isCausal: true });
    const ref = lr.matmul(weights.mul(lr.tensor(z, { shape: [1, 4, 19, 19] })), vx);
    expect(maxDiff(await f(q, k, v).data(), await ref.data())).toBeLessThan(2e-5);
  });
});

describe.skipIf(unavailable !== null)(
  `dropout on webgpu${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    const device = 'webgpu';

    it('F.dropout gives the CPU mask bit for bit', async () => {
      const x = lr.randn([5, 40]);
      const cpu = await F.dropout(x, 0.25, true, { generator: new lr.Generator(6) }).data();
      const gpu = await F.dropout(await x.to(device), 0.25, true, { generator: new lr.Generator(6) }).data();
      expect(Array.from(gpu)).toEqual(Array.from(cpu));
    });

    it('attention with dropout: gradients equal the CPU (GQA, causal, L = 21), and gradcheck passes', async () => {
      lr.manualSeed(4);
      const xs = [lr.randn([1, 2, 21, 8]), lr.randn([1, 1, 21, 8]), lr.randn([1, 1, 21, 8])];
      const g = lr.randn([1, 2, 21, 8]);
      const o = { isCausal: true, enableGqa: true, dropoutP: 0.4 };
      const run = async (ts: lr.Tensor[], gr: lr.Tensor) => {
        const leaves = ts.map((t) => t.detach().requiresGrad_(true));
        const out = F.scaledDotProductAttention(leaves[0], leaves[1], leaves[2], {
          ...o,
          generator: new lr.Generator(13),
        });
        out.backward(gr);
        return [await out.data(), ...(await Promise.all(leaves.map((t) => t.grad!.data())))];
      };
      const want = await run(xs, g);
      const onGpu = await Promise.all([...xs, g].map((t) => t.to(device)));
      const got = await run(onGpu.slice(0, 3), onGpu[3]);
      for (let i = 0; i < 4; i++)
        expect(maxDiff(got[i], want[i]), ['out', 'dq', 'dk', 'dv'][i]).toBeLessThan(2e-4);
      // head dim 8 as above: the same pipelines (each compile takes seconds on lavapipe)
      const small = await Promise.all(
        [lr.randn([1, 2, 3, 8]), lr.randn([1, 1, 5, 8]), lr.randn([1, 1, 5, 8])].map((t) => t.to(device)),
      );
      const r = await gradcheck(
        (a, b, c) => F.scaledDotProductAttention(a, b, c, { ...o, generator: new lr.Generator(1) }),
        small,
        { atol: 3e-3 },
      );
      expect(r.worst).toBeLessThanOrEqual(1);
    }, 300_000);
  },
);

describe('compile: a step with attention and residual dropout replays the eager steps', () => {
  for (const device of ['cpu', 'webgpu'] as const) {
    it.skipIf(device === 'webgpu' && unavailable !== null)(
      `${device}: 5 steps, losses and parameters`,
      async () => {
        const make = () => {
          lr.manualSeed(3);
          const gen = new lr.Generator(17);
          const attn = new CausalSelfAttention(16, 2, { dropout: 0.2, generator: gen, device });
          const head = new Linear(16, 16, { device });
          const opt = new AdamW([...attn.parameters(), ...head.parameters()], { lr: 0.01 });
          const step = (x: lr.Tensor) => {
            opt.zeroGrad();
            const loss = head.forward(attn.forward(x)).square().mean();
            loss.backward();
            opt.step();
            return loss.detach();
          };
          return { attn, head, step };
        };
        const eager = make();
        const compiled = make();
        const replay = lr.compile(compiled.step);
        const xs = lr.randn([2, 11, 16], { generator: new lr.Generator(1), device });
        const a: number[] = [];
        const b: number[] = [];
        for (let i = 0; i < 5; i++) {
          a.push(Number(await eager.step(xs).item()));
          b.push(Number(await replay(xs).item()));
        }
        expect(replay.stats.replays).toBe(3);
        expect(b).toEqual(a);
        // dropout draws a new mask each step: the losses are not those of the same step repeated
        expect(new Set(a.map((x) => x.toFixed(6))).size).toBe(5);
        const pa = await Promise.all(
          [...eager.attn.parameters(), ...eager.head.parameters()].map((p) => p.data()),
        );
        const pb = await Promise.all(
          [...compiled.attn.parameters(), ...compiled.head.parameters()].map((p) => p.data()),
        );
        for (let i = 0; i < pa.length; i++) expect(Array.from(pb[i])).toEqual(Array.from(pa[i]));
      },
      300_000,
    );
  }
});
