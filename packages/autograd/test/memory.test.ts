import '@lowrank/autograd';
import { noGrad, zeroGrad } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';

describe('memory', () => {
  it('1000 iterations of forward + backward + dispose keep memory() flat', async () => {
    lr.manualSeed(0);
    const w1 = lr.randn([8, 16], { requiresGrad: true, std: 0.3 });
    const b1 = lr.zeros([16], { requiresGrad: true });
    const w2 = lr.randn([16, 4], { requiresGrad: true, std: 0.3 });
    const x = lr.randn([6, 8]);
    const labels = lr.tensor([0, 1, 2, 3, 0, 1], { dtype: 'int32' });
    const params = [w1, b1, w2];
    const step = () => {
      // forward: an MLP with cross-entropy, layer norm, gather, cat, slicing, max
      const loss = lr.tidy(() => {
        const h = x.matmul(w1).add(b1).gelu({ approximate: 'tanh' });
        const n = h.sub(h.mean(-1, true)).div(h.var(-1, { keepdim: true, unbiased: false }).add(1e-5).sqrt());
        const logits = lr
          .cat([n, n.slice(0, 0, 2)], 0)
          .matmul(w2)
          .slice(0, 0, 6);
        const nll = logits.logSoftmax(-1).gather(1, labels.unsqueeze(1)).neg().mean();
        return nll.add(logits.max(-1).mean().mul(0.01));
      });
      loss.backward();
      loss.dispose();
      noGrad(() => {
        for (const p of params) p.add_(p.grad!, -0.01); // SGD
      });
      zeroGrad(params);
    };
    step(); // warm-up
    const before = lr.memory();
    for (let i = 0; i < 1000; i++) step();
    const after = lr.memory();
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytes).toBe(before.numBytes);
    lr.dispose(params, x, labels);
  });

  it('the graph of a forward pass that never runs backward is released with its result', () => {
    const w = lr.randn([4, 4], { requiresGrad: true });
    const before = lr.memory();
    const results = [];
    for (let i = 0; i < 100; i++) results.push(lr.tidy(() => w.matmul(w).softmax(-1).sum()));
    // each live result holds its graph: sum ← softmax (saves its output) ← matmul (saves w, w)
    expect(lr.memory().numTensors).toBe(before.numTensors + 100 * 4);
    lr.dispose(results);
    expect(lr.memory()).toEqual(before);
    w.dispose();
  });
});
