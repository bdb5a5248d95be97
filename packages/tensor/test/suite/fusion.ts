import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Tensor } from '../../src/index.js';
import * as lr from '../../src/index.js';
import { Bag, inputOf, LAYOUTS, type Layout } from './gen.js';
import type { SuiteContext } from './index.js';
import { prng } from './reference.js';

/**
 * Lazy fusion must not change any value: random chains of 1–8 elementwise ops, with views and
 * broadcasts between them, over random layouts and dtypes with NaN, ±Inf and −0 among the
 * inputs, are computed with fusion on and with it off, and must agree (bit for bit on the CPU,
 * where every intermediate is rounded as if stored; within a few ulps on a GPU, whose compiler
 * may contract a multiply and an add across what were two kernels). Reductions over a chain
 * (a fused prologue) are checked the same way.
 */

const SPECIAL = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0];

type Step = (x: Tensor, other: Tensor, mask: Tensor) => Tensor;

/** Steps a chain is drawn from: each keeps the shape of x (views reshape and come back). */
const STEPS: Record<string, Step> = {
  neg: (x) => x.neg(),
  abs: (x) => x.abs(),
  exp: (x) => x.exp(),
  log: (x) => x.abs().log(),
  sqrt: (x) => x.sqrt(),
  tanh: (x) => x.tanh(),
  sigmoid: (x) => x.sigmoid(),
  relu: (x) => x.relu(),
  gelu: (x) => x.gelu({ approximate: 'tanh' }),
  geluErf: (x) => x.gelu(),
  silu: (x) => x.silu(),
  square: (x) => x.square(),
  sign: (x) => x.sign(),
  floor: (x) => x.floor(),
  round: (x) => x.round(),
  reciprocal: (x) => x.reciprocal(),
  addScalar: (x) => x.add(1.5),
  mulScalar: (x) => x.mul(-2),
  add: (x, o) => x.add(o),
  sub: (x, o) => x.sub(o),
  mul: (x, o) => x.mul(o),
  div: (x, o) => x.div(o),
  pow: (x, o) => x.pow(o),
  maximum: (x, o) => x.maximum(o),
  minimum: (x, o) => x.minimum(o),
  where: (x, o, m) => lr.where(m, x, o),
  whereCompare: (x, o) => lr.where(x.gt(o), x, 0),
  clamp: (x) => x.clamp(-1, 1),
  castInt: (x) => x.clamp(-100, 100).cast('int32').add(1).cast('float32'),
  transposeBack: (x) =>
    x.rank >= 2
      ? x
          .transpose(0, x.rank - 1)
          .exp()
          .transpose(0, x.rank - 1)
      : x.exp(),
  flattenBack: (x) => x.reshape([-1]).mul(3).reshape(x.shape),
  // a negative-stride view of its input: composed backwards when the input is a lazy chain
  rotateHalf: (x) => (x.rank >= 1 && x.shape[x.rank - 1] % 2 === 0 ? lr.rotateHalf(x) : x.neg()),
  rotateHalfBack: (x) =>
    x.rank >= 2 && x.shape[0] % 2 === 0
      ? lr.rotateHalf(x.transpose(0, x.rank - 1)).transpose(0, x.rank - 1)
      : x,
  contiguous: (x) =>
    x.rank >= 2
      ? x
          .transpose(0, x.rank - 1)
          .contiguous()
          .transpose(0, x.rank - 1)
      : x.contiguous(),
};
const STEP_NAMES = Object.keys(STEPS);

/** Float inputs with special values mixed in (about one in four elements). */
function specialInput(shape: number[], layout: Layout, seed: number, bag: Bag, device: lr.Device): Tensor {
  const base = inputOf(shape, 'float', layout, seed);
  const r = prng(seed ^ 0x1234567);
  const data = base.ref.data.map((v) => (r() < 0.25 ? SPECIAL[Math.floor(r() * SPECIAL.length)] : v));
  const t = bag.add(lr.tensor(Float32Array.from(data), { shape, device }));
  if (layout === 'contiguous' || shape.length < 2) return t;
  return bag.add(lr.tidy(() => t.transpose(0, 1).contiguous().transpose(0, 1)));
}

/** Whether two float32 arrays agree: NaN with NaN, signed zeros and infinities exactly, else within tol. */
function agree(a: ArrayLike<number>, b: ArrayLike<number>, rtol: number, atol: number): string | null {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) return `[${i}] ${x} vs ${y}`;
      continue;
    }
    if (!Number.isFinite(x) || !Number.isFinite(y) || rtol === 0) {
      if (!Object.is(x, y) && !(rtol > 0 && x === y)) return `[${i}] ${x} vs ${y}`;
      continue;
    }
    if (Math.abs(x - y) > atol + rtol * Math.abs(y)) return `[${i}] ${x} vs ${y}`;
  }
  return null;
}

async function both(run: () => Tensor): Promise<[ArrayLike<number>, ArrayLike<number>]> {
  const was = lr.isFusionEnabled();
  try {
    lr.setFusion(true);
    const fused = run();
    const a = await fused.data();
    fused.dispose();
    lr.setFusion(false);
    const eager = run();
    const b = await eager.data();
    eager.dispose();
    return [a, b];
  } finally {
    lr.setFusion(was);
  }
}

export function fusionSuite({ device, numRuns, tol }: SuiteContext): void {
  const exact = tol.exact.rtol === 0 && device === 'cpu';
  const rtol = exact ? 0 : 1e-5;
  const atol = exact ? 0 : 1e-6;
  describe('fusion', () => {
    it('random chains of 1–8 ops agree with fusion on and off (NaN, ±Inf, −0, any layout)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 3 }),
          fc.array(fc.constantFrom(...STEP_NAMES), { minLength: 1, maxLength: 8 }),
          fc.integer({ min: 0, max: 0x7fffffff }),
          fc.constantFrom(...LAYOUTS),
          fc.boolean(),
          async (shape, steps, seed, layout, broadcastOther) => {
            const bag = new Bag();
            try {
              const x = specialInput(shape, layout, seed, bag, device);
              // the second operand broadcasts along dim 0 half of the time
              const otherShape = broadcastOther && shape.length > 0 ? [1, ...shape.slice(1)] : shape;
              const other = specialInput(otherShape, 'contiguous', seed + 1, bag, device);
              const mask = bag.add(specialInput(shape, 'contiguous', seed + 2, bag, device).gt(0));
              const run = () =>
                lr.tidy(() => steps.reduce((t, name) => STEPS[name](t, other, mask), x.mul(1)));
              const [fused, eager] = await both(run);
              const why = agree(fused, eager, rtol, atol);
              expect(why, `${steps.join(' → ')} on ${JSON.stringify(shape)} (${layout})`).toBeNull();
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns: numRuns * 4 },
      );
    });

    it('reductions over fused chains agree with fusion on and off (sum, max, mean, softmax)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
          fc.array(fc.constantFrom(...STEP_NAMES), { minLength: 1, maxLength: 4 }),
          fc.integer({ min: 0, max: 0x7fffffff }),
          fc.constantFrom('sum', 'max', 'mean', 'softmax', 'logsumexp'),
          async (shape, steps, seed, reduction) => {
            const bag = new Bag();
            try {
              // finite inputs: a sum over NaN/Inf is NaN either way and would hide the prologue
              const x = bag.add(
                lr.tensor(Float32Array.from(inputOf(shape, 'float', 'contiguous', seed).ref.data), {
                  shape,
                  device,
                }),
              );
              const other = bag.add(lr.tidy(() => x.mul(-0.5).add(0.25)));
              const mask = bag.add(x.gt(0));
              const dim = shape.length - 1;
              const run = () =>
                lr.tidy(() => {
                  const t = steps.reduce((acc, name) => STEPS[name](acc, other, mask).clamp(-8, 8), x.mul(1));
                  if (reduction === 'sum') return t.sum(dim);
                  if (reduction === 'max') return t.max(dim);
                  if (reduction === 'mean') return t.mean();
                  if (reduction === 'softmax') return t.softmax(dim);
                  return t.logsumexp(dim);
                });
              const [fused, eager] = await both(run);
              // reductions sum in the same order either way; only the GPU's contraction differs
              const why = agree(fused, eager, exact ? 0 : 2e-5, exact ? 0 : 2e-5);
              expect(why, `${steps.join(' → ')} → ${reduction} on ${JSON.stringify(shape)}`).toBeNull();
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns: numRuns * 2 },
      );
    });

    it("a fused kernel keeps each op's IEEE result (no rewriting across ops by the compiler)", async () => {
      // found by the property above on lavapipe: square(sqrt(−x)) became −x, exp(−2·log 0) became 0
      const bag = new Bag();
      try {
        const x = bag.add(lr.tensor([0.5, 0, 2], { device }));
        const a = await bag.add(lr.tidy(() => x.neg().sqrt().square())).data();
        expect(Number.isNaN(a[0]) && Number.isNaN(a[2])).toBe(true);
        expect(a[1]).toBe(0);
        const b = await bag.add(lr.tidy(() => x.log().mul(-2).exp().neg())).data();
        expect(b[1]).toBe(Number.NEGATIVE_INFINITY);
        expect(Math.abs(b[0] + 4)).toBeLessThan(1e-5);
      } finally {
        bag.dispose();
      }
    });

    it('the one-kernel softmax matches its composite definition on masked, −∞, NaN and +∞ rows', async () => {
      const bag = new Bag();
      try {
        const ninf = Number.NEGATIVE_INFINITY;
        const rows = [
          [1, 2, 3, 4, 5],
          [0.5, ninf, 2, ninf, -1], // a causal mask
          [ninf, ninf, ninf, ninf, ninf], // NaN, as exp(x − max) / Σ gives
          [1, Number.NaN, 2, 3, 4],
          [1, Number.POSITIVE_INFINITY, 2, 3, 4],
          [-1000, -1001, -999, -1000, -1000.5], // no underflow: shifted by the max
        ];
        const x = bag.add(lr.tensor(rows, { device }));
        // a scale before the softmax is its prologue (one kernel on WebGPU)
        const got = await bag.add(lr.tidy(() => x.mul(0.5).softmax(-1))).data();
        for (let r = 0; r < rows.length; r++) {
          const v = rows[r].map((a) => a * 0.5);
          const m = v.some(Number.isNaN) ? Number.NaN : Math.max(...v);
          const e = v.map((a) => Math.exp(a - m));
          const sum = e.reduce((a, b) => a + b, 0);
          for (let j = 0; j < v.length; j++) {
            const want = e[j] / sum;
            const g = got[r * v.length + j];
            if (Number.isNaN(want)) expect(g, `row ${r}`).toBeNaN();
            else expect(Math.abs(g - want), `row ${r} col ${j}`).toBeLessThan(1e-6);
          }
        }
      } finally {
        bag.dispose();
      }
    });

    it('an in-place write computes the chains still reading the old values first', async () => {
      const bag = new Bag();
      try {
        const p = bag.add(lr.tensor([1, 2, 3], { device }));
        const doubled = bag.add(p.mul(2)); // lazy: reads p
        const view = bag.add(lr.tidy(() => p.reshape([3, 1]).add(0))); // lazy through a view
        p.add_(10);
        p.fill_(0); // a fill is an in-place write too
        expect(Array.from(await doubled.data())).toEqual([2, 4, 6]);
        expect(Array.from(await view.data())).toEqual([1, 2, 3]);
        expect(Array.from(await p.data())).toEqual([0, 0, 0]);
        const q = bag.add(lr.tensor([1, 2, 3, 4], { device }));
        lr.tidy(() => q.copy_(q.slice(0, 0, 1).expand([4]).add(q))); // the source reads the destination
        expect(Array.from(await q.data())).toEqual([2, 3, 4, 5]);
      } finally {
        bag.dispose();
      }
    });

    it('tidy and dispose free a chain that was never computed (its inputs stay as they were)', async () => {
      const bag = new Bag();
      try {
        const x = bag.add(lr.ones([64], { device }));
        const before = lr.memory();
        const y = lr.tidy(() => x.mul(2).add(1).exp());
        expect(lr.memory().numTensors).toBe(before.numTensors + 1);
        y.dispose();
        expect(lr.memory().numTensors).toBe(before.numTensors);
        expect(lr.memory().numBytes).toBe(before.numBytes);
        expect(Array.from(await x.data())).toEqual(new Array(64).fill(1));
      } finally {
        bag.dispose();
      }
    });

    it('a long chain is capped: 10,000 lazy ops run without deep recursion and give the right value', async () => {
      const bag = new Bag();
      try {
        let t = bag.add(lr.zeros([3], { device }));
        for (let i = 0; i < 10000; i++) {
          const next = t.add(1);
          t.dispose();
          t = next;
        }
        bag.add(t);
        expect(Array.from(await t.data())).toEqual([10000, 10000, 10000]);
      } finally {
        bag.dispose();
      }
    });
  });
}
