import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignSlots, type PlanValue, planMemory } from '../src/compile/plan.js';
import { backendAllocationCount } from '../src/engine/memory.js';
import {
  captureGuard,
  compile,
  Generator,
  hostTensor,
  hostValue,
  isTracing,
  keep,
  memory,
  onReplay,
  rand,
  type Tensor,
  tensor,
  zeros,
} from '../src/index.js';

/** Intervals [def, lastUse] of intermediates overlap when neither ends before the other starts. */
const overlap = (a: PlanValue, b: PlanValue) => !(a.lastUse < b.def || b.lastUse < a.def);

describe('memory plan', () => {
  const value = fc
    .record({
      bytes: fc.integer({ min: 4, max: 4096 }),
      def: fc.integer({ min: 0, max: 30 }),
      len: fc.nat(8),
      device: fc.constantFrom('cpu' as const, 'webgpu' as const),
    })
    .map(
      (v): PlanValue => ({
        bytes: v.bytes,
        def: v.def,
        lastUse: v.def + v.len,
        kind: 'intermediate',
        device: v.device,
      }),
    );

  it('slots never hold two live values, and each fits what it holds, on its device (property)', () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 40 }), (values) => {
        const { slotOf, slots, devices } = assignSlots(values);
        for (let i = 0; i < values.length; i++) {
          expect(slots[slotOf[i]]).toBeGreaterThanOrEqual(values[i].bytes);
          expect(devices[slotOf[i]]).toBe(values[i].device);
          for (let j = i + 1; j < values.length; j++)
            if (slotOf[i] === slotOf[j]) expect(overlap(values[i], values[j])).toBe(false);
        }
      }),
    );
  });

  it('a small value does not take the slot a later large value needs (largest first)', () => {
    // in call order with best fit, the 10-byte value took the 100-byte slot the third value then
    // had to double: 200 bytes for a worst moment of 110
    const v = (bytes: number, def: number, lastUse: number): PlanValue => ({
      bytes,
      def,
      lastUse,
      kind: 'intermediate',
      device: 'cpu',
    });
    const { slots } = assignSlots([v(100, 0, 0), v(10, 1, 5), v(100, 2, 3)]);
    expect(slots.reduce((a, b) => a + b, 0)).toBe(110);
  });

  it('the peak is the naive maximum of live bytes over the calls (property)', () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 40 }), fc.nat(1000), (values, external) => {
        const calls = 40;
        const plan = planMemory(values, calls, external);
        let naive = 0;
        for (let t = 0; t < calls; t++) {
          const live = values.filter((v) => v.def <= t && t <= v.lastUse).reduce((n, v) => n + v.bytes, 0);
          naive = Math.max(naive, live);
        }
        expect(plan.peakBytes).toBe(naive + external);
        expect(plan.arenaBytes).toBeGreaterThanOrEqual(naive); // slots hold the worst moment at least
        expect(plan.arenaBytes).toBeLessThanOrEqual(plan.unplannedBytes);
      }),
    );
  });

  it('outputs, state and constants live to the end', () => {
    const plan = planMemory(
      [
        { bytes: 10, def: 0, lastUse: 0, kind: 'intermediate', device: 'cpu' },
        { bytes: 2000, def: 0, lastUse: 1, kind: 'upload', device: 'cpu' },
        { bytes: 100, def: 0, lastUse: 3, kind: 'state', device: 'cpu' },
        { bytes: 1000, def: 2, lastUse: 3, kind: 'output', device: 'cpu' },
      ],
      3,
      5,
    );
    // the upload counts while live (10 + 2000 + 100 at call 0, + 5 external) but takes no slot
    expect(plan).toMatchObject({
      peakBytes: 2115,
      stateBytes: 100,
      outputBytes: 1000,
      slots: [10],
      uploads: 1,
    });
  });
});

describe('compile (tensor ops only)', () => {
  it('replays read new inputs and give new outputs; in-place updates of externals repeat', async () => {
    const acc = zeros([3]);
    const step = compile((x: Tensor) => {
      acc.add_(x);
      return x.mul(2).add(acc);
    });
    const outs: number[][] = [];
    for (let i = 1; i <= 4; i++) outs.push((await step(tensor([i, 0, -i])).toArray()) as number[]);
    // acc after i calls: Σ1..i of x
    expect(outs).toEqual([
      [3, 0, -3],
      [7, 0, -7],
      [12, 0, -12],
      [18, 0, -18],
    ]);
    expect(step.stats.replays).toBe(2);
  });

  it('replays bind the plan: intermediates in its slots, kept state in place, only outputs allocate', async () => {
    const w1 = tensor([
      [1, -2, 3],
      [0.5, 1, -1],
    ]);
    const w2 = tensor([[2], [-1], [0.25]]);
    let kept: Tensor | null = null; // state the step leaves behind, as a gradient is
    const body = (x: Tensor) => {
      const h = x.matmul(w1).relu();
      kept?.dispose();
      kept = keep(h.matmul(w2));
      return h.matmul(w2.mul(3)).exp().sum();
    };
    const step = compile(body);
    const eager = async (x: Tensor) => {
      const h = x.matmul(w1).relu();
      return { loss: await h.matmul(w2.mul(3)).exp().sum().item(), kept: await h.matmul(w2).toArray() };
    };
    const xs = [1, 2, 3, 4, 5].map((i) => tensor([[0.1 * i, -0.2 * i]]));
    const traced = { loss: 0, kept: null as Tensor | null };
    for (const [i, x] of xs.entries()) {
      const before = backendAllocationCount();
      const loss = step(x);
      const made = backendAllocationCount() - before;
      if (i === 1) traced.kept = kept;
      const expected = await eager(x);
      expect(await loss.item()).toBe(expected.loss);
      // a replay runs no JS of the step: the tensor kept while tracing holds each replay's value
      expect(await (i >= 1 ? (traced.kept as Tensor) : (kept as unknown as Tensor)).toArray()).toEqual(
        expected.kept,
      );
      if (i >= 2) expect(made).toBe(1); // the loss; every intermediate and the kept value took no new memory
      traced.loss = made;
    }
    const slots = step.slotStats();
    expect(slots).toMatchObject({ unbound: 0, misses: 0 });
    expect(slots?.reserved).toBe(step.memoryPlan()?.slots.length);
    expect(slots?.reserved).toBeGreaterThan(0);
    step.dispose();
    expect(step.slotStats()?.reserved).toBe(0);
  });

  it('random tensors are drawn again at every replay, as eagerly', async () => {
    const eagerGen = new Generator(5);
    const gen = new Generator(5);
    const step = compile((x: Tensor) => x.add(rand([4], { generator: gen })));
    const x = tensor([0, 0, 0, 0]);
    for (let i = 0; i < 4; i++) {
      const expected = await x.add(rand([4], { generator: eagerGen })).toArray();
      expect(await step(x).toArray()).toEqual(expected);
    }
  });

  it('hostTensor, hostValue and onReplay run again per replay; guards retrace', async () => {
    let calls = 0;
    let scale = 2;
    const counter = { n: 0 };
    const step = compile((x: Tensor) => {
      const t = hostTensor(() => new Float32Array([++calls, 0]), [2]);
      const params = hostValue(() => ({ n: counter.n }));
      expect(params.n).toBe(counter.n);
      counter.n++;
      onReplay(() => counter.n++);
      const traced = scale;
      captureGuard(() => scale === traced, 'the scale');
      return x.mul(traced).add(t);
    });
    const x = tensor([1, 1]);
    expect(await step(x).toArray()).toEqual([3, 2]); // warm-up: eager
    expect(await step(x).toArray()).toEqual([4, 2]); // traced
    expect(isTracing()).toBe(false);
    expect(await step(x).toArray()).toEqual([5, 2]); // replayed: hostTensor computed again
    expect(counter.n).toBe(3);
    scale = 3;
    expect(await step(x).toArray()).toEqual([7, 3]); // the guard failed: traced again (4th hostTensor value)
    expect(step.stats).toMatchObject({
      traces: 2,
      replays: 1,
      invalidations: 1,
      lastInvalidation: 'the scale changed',
    });
  });

  it('an external held only by a lazy chain the step inlines stays alive through replays', async () => {
    // x is read by the step's kernel through the lazy `twice`, its only holder (as a mask buffer
    // built from an arange is): computing `twice` before a replay must not free x under the step
    const x = tensor([1, 2, 3]);
    const twice = x.mul(2);
    x.dispose();
    const step = compile((y: Tensor) => y.add(twice));
    for (let i = 0; i < 4; i++)
      expect(await step(tensor([i, i, i])).toArray()).toEqual([2 + i, 4 + i, 6 + i]);
    expect(step.stats.replays).toBe(2);
  });

  it('a failed trace leaves nothing held and the next call traces again', async () => {
    let fail = false;
    const step = compile((x: Tensor) => {
      const y = x.add(tensor([1, 1]));
      if (fail) throw new Error('boom');
      return y;
    });
    const x = tensor([1, 2]);
    step(x).dispose();
    const before = memory();
    fail = true;
    expect(() => step(x)).toThrow('boom');
    expect(memory().numBytes).toBe(before.numBytes);
    fail = false;
    expect(await step(x).toArray()).toEqual([2, 3]);
    expect(await step(x).toArray()).toEqual([2, 3]);
    expect(step.stats.replays).toBe(1);
  });

  it('a compiled function called inside another trace runs eagerly there', async () => {
    const inner = compile((x: Tensor) => x.mul(3));
    const outer = compile((x: Tensor) => inner(x).add(1));
    const x = tensor([1, 2]);
    for (let i = 0; i < 4; i++) expect(await outer(x).toArray()).toEqual([4, 7]);
    expect(outer.stats.replays).toBe(2);
  });

  it('options are validated; disabled compiles run eagerly', () => {
    expect(() => compile((x: Tensor) => x, { warmup: -1 })).toThrow(/warmup must be an integer ≥ 0/);
    expect(() => compile((x: Tensor) => x, { cacheSize: 0 })).toThrow(/cacheSize/);
    const step = compile((x: Tensor) => x.mul(2), { enabled: false });
    for (let i = 0; i < 3; i++) step(tensor([1])).dispose();
    expect(step.stats).toMatchObject({ eager: 3, traces: 0, replays: 0 });
  });

  it('a new shape traces again; the cache is bounded', async () => {
    const step = compile((x: Tensor) => x.sum(), { warmup: 0, cacheSize: 2 });
    for (const n of [2, 3, 2, 4, 2]) expect(await step(tensor(new Float32Array(n).fill(1))).item()).toBe(n);
    // 2 traced, 3 traced, 2 replayed, 4 traced (evicts 3), 2 replayed
    expect(step.stats).toMatchObject({ traces: 3, replays: 2 });
  });
});
