import { enableGrad, grad, graph, isGradEnabled, noGrad, valueAndGrad, zeroGrad } from '@lowrank/autograd';
import type { Tensor } from '@lowrank/tensor';
import * as lr from '@lowrank/tensor';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const arr = async (t: Tensor | null) => (t ? ((await t.toArray()) as number[] | number[][]) : null);
const close = (a: unknown, b: unknown) => {
  const fa = [a].flat(3) as number[];
  const fb = [b].flat(3) as number[];
  expect(fa.length).toBe(fb.length);
  fa.forEach((v, i) => {
    expect(v).toBeCloseTo(fb[i], 5);
  });
};

let live: number;
beforeEach(() => {
  live = lr.memory().numTensors;
});
afterEach(() => {
  // every test disposes what it made: nothing leaks, including graph-saved tensors
  expect(lr.memory().numTensors).toBe(live);
});

describe('backward', () => {
  it('computes the issue example: x.matmul(w).relu().sum()', async () => {
    const x = lr.tensor([
      [1, -2, 0.5],
      [0.3, 1, -1],
    ]);
    const w = lr.tensor(
      [
        [0.5, -1],
        [0.25, 2],
        [-0.5, 1],
      ],
      { requiresGrad: true },
    );
    const loss = lr.tidy(() => x.matmul(w).relu().sum());
    expect(loss.requiresGrad).toBe(true);
    expect(loss.isLeaf).toBe(false);
    loss.backward();
    // h = x@w = [[-0.25,-4.5],[0.9,1.7]]: relu mask [[0,0],[1,1]], dW = xᵀ·mask
    close(await arr(w.grad), [
      [0.3, 0.3],
      [1, 1],
      [-1, -1],
    ]);
    expect(x.grad).toBeNull();
    lr.dispose(x, w, loss);
  });

  it('accumulates into leaves across calls; zeroGrad clears', async () => {
    const w = lr.tensor([1, 2, 3], { requiresGrad: true });
    for (let i = 0; i < 3; i++) lr.tidy(() => w.square().sum().backward());
    close(await arr(w.grad), [6, 12, 18]);
    const g = w.grad;
    lr.tidy(() => w.sum().backward());
    expect(w.grad).toBe(g); // accumulated in place
    close(await arr(w.grad), [7, 13, 19]);
    zeroGrad([w]);
    expect(w.grad).toBeNull();
    w.dispose();
  });

  it('sums gradients over shared subgraphs and repeated operands', async () => {
    const x = lr.tensor([0.5, -1], { requiresGrad: true });
    lr.tidy(() => {
      const y = x.mul(x); // x²
      return y.add(y.exp()).sum().backward(); // d/dx (x² + e^{x²}) = 2x(1 + e^{x²})
    });
    close(
      await arr(x.grad),
      [0.5, -1].map((v) => 2 * v * (1 + Math.exp(v * v))),
    );
    x.dispose();
  });

  it('takes a gradient for non-scalar outputs and refuses to imply one', async () => {
    const x = lr.tensor([1, 2, 3], { requiresGrad: true });
    const y = x.mul(2);
    expect(() => y.backward()).toThrow(/shape \[3\].*one-element tensor/);
    const g = lr.tensor([1, 0, -1]);
    const wrong = lr.tensor([1, 2]);
    expect(() => y.backward(wrong)).toThrow(/gradient has shape \[2\], expected the tensor's shape \[3\]/);
    y.backward(g);
    close(await arr(x.grad), [2, 0, -2]);
    expect(await g.toArray()).toEqual([1, 0, -1]); // the caller's gradient is untouched
    lr.dispose(x, y, g, wrong);
  });

  it('backward on a leaf seeds its own gradient', async () => {
    const x = lr.tensor(3, { requiresGrad: true });
    x.backward();
    expect(await x.grad!.item()).toBe(1);
    x.dispose();
  });

  it('frees the graph after backward; a second backward says so; retainGraph keeps it', async () => {
    const x = lr.tensor([1, 2], { requiresGrad: true });
    const y = lr.tidy(() => x.exp().sum());
    y.backward(undefined, { retainGraph: true });
    y.backward();
    close(await arr(x.grad), [2 * Math.E, 2 * Math.exp(2)]);
    expect(() => y.backward()).toThrow(/backward through the graph a second time.*retainGraph: true/);
    lr.dispose(x, y);
  });

  it('keeps saved tensors alive when the user disposes inputs and intermediates', async () => {
    const w = lr.tensor([2, 3], { requiresGrad: true });
    const loss = lr.tidy(() => {
      const x = lr.tensor([5, 7]);
      const h = x.mul(w);
      const out = h.sin().sum();
      x.dispose();
      h.dispose();
      return out;
    });
    loss.backward();
    close(await arr(w.grad), [5 * Math.cos(10), 7 * Math.cos(21)]);
    lr.dispose(w, loss);
  });

  it('.grad survives the tidy that called backward; nothing else is left', async () => {
    const w = lr.randn([4, 3], { requiresGrad: true });
    const x = lr.randn([5, 4]);
    const before = lr.memory().numTensors;
    lr.tidy(() => {
      x.matmul(w).tanh().softmax(-1).logsumexp(0).sum().backward();
    });
    expect(w.grad).not.toBeNull();
    expect(w.grad!.isDisposed).toBe(false);
    expect(lr.memory().numTensors).toBe(before + 1); // just w.grad
    lr.dispose(w, x);
  });

  it('releases the graph when its results are disposed without backward', () => {
    const w = lr.randn([3, 3], { requiresGrad: true });
    const before = lr.memory();
    const a = w.mul(w);
    const b = a.exp();
    const c = b.matmul(w);
    a.dispose(); // b's node still holds a's node: the graph stays usable
    expect(lr.memory().numTensors).toBeGreaterThan(before.numTensors);
    c.dispose();
    b.dispose();
    expect(lr.memory()).toEqual(before);
    w.dispose();
  });

  it('refuses an unknown-rule op at backward with a clear message', () => {
    const x = lr.tensor([1], { requiresGrad: true });
    const y = lr.runOp('test.noRule', [x], {}, () => x.mul(2));
    expect(y.requiresGrad).toBe(true);
    expect(() => lr.tidy(() => y.sum().backward())).toThrow(/op 'test.noRule' has no gradient rule/);
    lr.dispose(x, y);
  });
});

describe('grad mode, detach and requiresGrad', () => {
  it('noGrad records nothing; enableGrad re-enables; modes nest', () => {
    const w = lr.ones([2], { requiresGrad: true });
    expect(isGradEnabled()).toBe(true);
    const y = noGrad(() => {
      expect(isGradEnabled()).toBe(false);
      const inner = enableGrad(() => w.mul(2));
      expect(inner.requiresGrad).toBe(true);
      inner.dispose();
      return w.mul(2);
    });
    expect(isGradEnabled()).toBe(true);
    expect(y.requiresGrad).toBe(false);
    expect(y.isLeaf).toBe(true);
    expect(() => noGrad(() => Promise.resolve(1))).toThrow(/synchronous/);
    lr.dispose(w, y);
  });

  it('in-place updates need noGrad on tensors that require grad', async () => {
    const w = lr.ones([2], { requiresGrad: true });
    expect(() => w.sub_(1)).toThrow(/in place/);
    noGrad(() => w.sub_(0.5));
    expect(await w.toArray()).toEqual([0.5, 0.5]);
    w.dispose();
  });

  it('detach cuts the graph and shares storage', async () => {
    const w = lr.tensor([1, 2], { requiresGrad: true });
    const d = lr.tidy(() => w.mul(3).detach());
    expect(d.requiresGrad).toBe(false);
    expect(d.isLeaf).toBe(true);
    lr.tidy(() => w.mul(d).sum().backward());
    close(await arr(w.grad), [3, 6]); // d is a constant
    lr.dispose(w, d);
  });

  it('requiresGrad_ marks leaves; only float32; not turned off on results', () => {
    const x = lr.zeros([2]).requiresGrad_();
    expect(x.requiresGrad).toBe(true);
    const i = lr.zeros([2], { dtype: 'int32' });
    expect(() => i.requiresGrad_()).toThrow(/float32/);
    const y = x.add(1);
    expect(() => y.requiresGrad_(false)).toThrow(/detach/);
    lr.dispose(x, y, i);
  });
});

describe('non-differentiable ops', () => {
  it.each([
    ['argmax', (x: Tensor) => x.argmax().float()],
    ['gt', (x: Tensor) => x.gt(0).float().sum()],
    ['round', (x: Tensor) => x.round().sum()],
    ['cast', (x: Tensor) => x.int().float().sum()],
  ])('%s: outputs do not require grad, and backward says why', (op, f) => {
    const x = lr.tensor([0.4, -1.2, 2.5], { requiresGrad: true });
    lr.tidy(() => {
      const y = f(x);
      expect(y.requiresGrad).toBe(false);
      expect(() => y.backward()).toThrow(new RegExp(`only through '${op}'.*not differentiable`));
    });
    x.dispose();
  });

  it('grad(f) reports it too', () => {
    const x = lr.tensor([1, 2]);
    expect(() => grad((t: Tensor) => t.argmax().float())(x)).toThrow(/'argmax'/);
    x.dispose();
  });
});

describe('tie and boundary conventions (exact)', () => {
  const g = async (f: (x: Tensor) => Tensor, values: number[]) => {
    const x = lr.tensor(values, { requiresGrad: true });
    lr.tidy(() => f(x).sum().backward());
    const out = (await x.grad!.toArray()) as number[];
    x.dispose();
    return out;
  };
  it('max/min: tied elements share the gradient equally', async () => {
    expect(await g((x) => x.max(), [1, 3, 3, 2])).toEqual([0, 0.5, 0.5, 0]);
    expect(await g((x) => x.min(), [1, 1, 1, 2])).toEqual([1 / 3, 1 / 3, 1 / 3, 0].map(Math.fround));
    expect(await g((x) => x.reshape([2, 2]).max(1), [1, 1, 0, 5])).toEqual([0.5, 0.5, 0, 1]);
  });
  it('maximum/minimum: ties give each operand half (PyTorch)', async () => {
    const a = lr.tensor([1, 2, 3], { requiresGrad: true });
    const b = lr.tensor([1, 5, 0], { requiresGrad: true });
    lr.tidy(() => a.maximum(b).add(a.minimum(b).mul(10)).sum().backward());
    expect(await a.grad!.toArray()).toEqual([5.5, 10, 1]);
    expect(await b.grad!.toArray()).toEqual([5.5, 1, 10]);
    lr.dispose(a, b);
  });
  it('clamp passes the gradient where min ≤ x ≤ max, bounds included (PyTorch)', async () => {
    expect(await g((x) => x.clamp(0, 1), [-1, 0, 0.5, 1, 2])).toEqual([0, 1, 1, 1, 0]);
    expect(await g((x) => x.clamp(null, 1), [-1, 1, 2])).toEqual([1, 1, 0]);
  });
  it('relu and abs have gradient 0 at 0', async () => {
    expect(await g((x) => x.relu(), [-1, 0, 2])).toEqual([0, 0, 1]);
    expect(await g((x) => x.abs(), [-1, 0, 2])).toEqual([-1, 0, 1]);
  });
  it('prod with zeros: only a lone zero gets the product of the others', async () => {
    expect(await g((x) => x.prod(), [2, 0, 3])).toEqual([0, 6, 0]);
    expect(await g((x) => x.prod(), [0, 0, 3])).toEqual([0, 0, 0]);
  });
});

describe('functional API', () => {
  it('valueAndGrad returns f and its gradients without touching the arguments', async () => {
    const x = lr.tensor([1, 2]);
    const w = lr.tensor([3, -1], { requiresGrad: true });
    const f = (a: Tensor, b: Tensor) => a.mul(b).square().sum(); // Σ (a b)²
    const { value, grads } = valueAndGrad(f)(x, w);
    expect(await value.item()).toBe(9 + 4);
    expect(value.requiresGrad).toBe(false);
    close(await arr(grads[0]), [2 * 3 * 3, 2 * 2 * 1]); // 2 a b²
    close(await arr(grads[1]), [2 * 1 * 3, 2 * 4 * -1]); // 2 a² b
    expect(w.grad).toBeNull();
    expect(x.requiresGrad).toBe(false);
    lr.dispose(x, w, value, grads);
  });

  it('grad with argnums, zeros for unused arguments, and non-float arguments', async () => {
    const x = lr.tensor([0, 1]);
    const idx = lr.tensor([1, 1], { dtype: 'int32' });
    const unused = lr.ones([3]);
    const [dx, du] = grad((a: Tensor, i: Tensor, _u: Tensor) => a.indexSelect(0, i).sin().sum(), {
      argnums: [0, 2],
    })(x, idx, unused);
    close(await arr(dx), [0, 2 * Math.cos(1)]);
    expect(await du.toArray()).toEqual([0, 0, 0]);
    expect(() => grad((a: Tensor) => a.mul(2))(x)).toThrow(/one-element tensor/);
    expect(() => grad((a: Tensor, i: Tensor) => a.sum().add(i.sum()))(x, idx)).toThrow(
      /argument 1 must be float32/,
    );
    lr.dispose(x, idx, unused, dx, du);
  });

  it('results belong to the caller’s tidy scope', () => {
    const x = lr.tensor([1, 2]);
    const before = lr.memory().numTensors;
    lr.tidy(() => {
      grad((a: Tensor) => a.exp().sum())(x);
    });
    expect(lr.memory().numTensors).toBe(before);
    x.dispose();
  });
});

describe('graph printer', () => {
  it('shows ops, shapes, leaves, constants and shared nodes as text', () => {
    const x = lr.ones([2, 3]);
    const w = lr.ones([3, 4], { requiresGrad: true });
    const h = x.matmul(w);
    const r = h.relu();
    const a = r.add(h);
    const loss = a.sum();
    expect(graph(loss, { names: { x, w, h } })).toBe(
      [
        `sum [] #${loss.id} requiresGrad`,
        `└─ add [2,4] #${a.id}`,
        `   ├─ relu [2,4] #${r.id}`,
        `   │  └─ h = matmul [2,4] #${h.id}`,
        '   │     ├─ x [2,3] constant',
        '   │     └─ w [3,4] leaf requiresGrad',
        `   └─ h #${h.id} (shown above)`,
      ].join('\n'),
    );
    const dot = graph(loss, { format: 'dot', names: { w } });
    expect(dot).toMatch(/^digraph autograd \{/);
    expect(dot).toContain(`t${w.id} [label="w\\n[3,4]", shape=box, style=filled, fillcolor=lightblue];`);
    expect(dot).toContain(`n${h.id} -> n${a.id};`);
    expect(graph(x)).toBe(`#${x.id} [2,3] no graph (does not require grad)`);
    loss.backward();
    expect(graph(loss)).toContain('(freed by backward)');
    lr.dispose(x, w, h, r, a, loss);
  });
});
