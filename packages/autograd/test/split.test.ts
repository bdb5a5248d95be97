import '@lowrank/autograd';
import { gradcheck } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { countKernels } from '../../tensor/test/count-kernels.js';

/**
 * The gradient of a split: its parts are placed into one buffer by one cat (a copy per part, no
 * zero fill and no indexAdd). Counted on GPT-2's `c_attn(x).split(C, 2)`, values against loops.
 */

/** x [N, C] · Wᵀ + b, split into three [N, C] parts, each read against its own random tensor. */
function qkvLoss(x: lr.Tensor, w: lr.Tensor, b: lr.Tensor, r: readonly lr.Tensor[], c: number): lr.Tensor {
  return lr.tidy(() => {
    const [q, k, v] = x.matmul(w.T).add(b).split(c, 2);
    return q.mul(r[0]).sum().add(k.mul(r[1]).sum()).add(v.mul(r[2]).sum());
  });
}

describe('split gradients', () => {
  it("c_attn(x).split(C, 2)'s backward: the three parts are three copies into one buffer", async () => {
    lr.manualSeed(5);
    const [B, T, C] = [2, 5, 8];
    const x = lr.randn([B, T, C], { requiresGrad: true });
    const w = lr.randn([3 * C, C], { requiresGrad: true });
    const b = lr.randn([3 * C], { requiresGrad: true });
    const r = [0, 1, 2].map(() => lr.randn([B, T, C]));
    const loss = qkvLoss(x, w, b, r, C);
    lr.realize(loss.storage);
    const counts = countKernels(() => {
      loss.backward();
      for (const t of [x, w, b]) lr.realize(t.grad!.storage);
    });
    // 3 copies (the split) + 1 (W's gradient is a transposed view, copied into .grad); with a
    // zero tensor and an indexAdd per part it took 8 elementwise kernels and 3 indexAdds
    expect(counts).toEqual({ elementwise: 4, reduce: 1, matmul: 2 });
    // reference: d qkv [N, 3C] is r0 | r1 | r2 side by side
    const xs = await x.data();
    const ws = await w.data();
    const rs = await Promise.all(r.map((t) => t.data()));
    const n = B * T;
    const dq = (i: number, o: number) => rs[Math.floor(o / C)][i * C + (o % C)];
    const dw = new Float64Array(3 * C * C);
    const db = new Float64Array(3 * C);
    const dx = new Float64Array(n * C);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < 3 * C; o++) {
        db[o] += dq(i, o);
        for (let j = 0; j < C; j++) {
          dw[o * C + j] += dq(i, o) * xs[i * C + j];
          dx[i * C + j] += dq(i, o) * ws[o * C + j];
        }
      }
    }
    for (const [t, want] of [
      [w, dw],
      [b, db],
      [x, dx],
    ] as const) {
      const got = await t.grad!.data();
      for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 4);
    }
    lr.dispose(x, w, b, loss, ...r);
  });

  it('finite differences: overlapping, strided, leaf and mixed parts, along several dims', async () => {
    lr.manualSeed(6);
    const x = lr.randn([4, 6], { requiresGrad: true });
    const cases: ((t: lr.Tensor) => lr.Tensor)[] = [
      // a leaf split directly, parts read differently
      (t) => {
        const [a, b, c] = t.split([1, 3, 2], 1);
        return a.sin().sum().add(b.square().sum()).add(c.mul(3).sum());
      },
      // overlapping slices and the whole tensor: two cats and a dense part, summed
      (t) =>
        t
          .narrow(0, 0, 3)
          .exp()
          .sum()
          .add(t.narrow(0, 1, 3).square().sum())
          .add(t.tanh().sum()),
      // parts along two dims, a gap, and a strided slice (the zeros + indexAdd rule)
      (t) => {
        const y = t.mul(1.5);
        const rows = y.narrow(0, 1, 2).sin().sum();
        const cols = y.narrow(1, 4, 2).cos().sum();
        const strided = y.slice(1, 0, 6, 2).square().sum();
        return rows.add(cols).add(strided);
      },
      (t) =>
        lr
          .chunk(t.exp(), 3, 0)
          .map((p, i) => p.mul(i + 1).sum())
          .reduce((a, b) => a.add(b)),
    ];
    for (const f of cases) {
      const { ok, worst } = await gradcheck(f, [x]);
      expect(ok, `worst ${JSON.stringify(worst)}`).toBe(true);
    }
    x.dispose();
  });

  it('no tensor leaks from a backward through parts', () => {
    const x = lr.randn([3, 4], { requiresGrad: true });
    const before = lr.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const loss = lr.tidy(() => {
        const [a, b] = x.mul(2).split(2, 1);
        return a.sum().add(b.square().sum());
      });
      loss.backward();
      loss.dispose();
      x.grad!.dispose();
      x.grad = null;
    }
    expect(lr.memory().numTensors).toBe(before);
    x.dispose();
  });
});

describe('cat forward', () => {
  it('writes each input into its slice with no zero fill first', async () => {
    const a = lr.tensor([[1, 2]]);
    const b = lr.tensor([[3, 4]]);
    const e = lr.zeros([0, 2]);
    let out: lr.Tensor | null = null;
    const counts = countKernels(() => {
      out = lr.cat([a, e, b.mul(2)], 0);
    });
    expect(counts).toEqual({ elementwise: 2 });
    expect(await out!.toArray()).toEqual([
      [1, 2],
      [6, 8],
    ]);
    lr.dispose(a, b, e, out!);
  });
});
