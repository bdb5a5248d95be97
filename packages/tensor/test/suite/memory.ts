import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Device, Tensor } from '../../src/index.js';
import * as lr from '../../src/index.js';
import { arbInput, assertClose, Bag, EXACT, f32, inputOf, read } from './gen.js';
import type { SuiteContext } from './index.js';
import { build, map, ravel, zip } from './reference.js';

/** A tensor on the other device: a real one when that backend is up, else a stand-in storage. */
function otherDeviceTensor(device: Device): { t: Tensor; release: () => void } {
  const other: Device = device === 'cpu' ? 'webgpu' : 'cpu';
  if (lr.hasBackend(other)) {
    const t = lr.zeros([2, 2], { device: other });
    return { t, release: () => t.dispose() };
  }
  const storage = new lr.Storage(other, 'float32', 4, 16, null);
  const t = new lr.Tensor(storage, [2, 2]);
  return {
    t,
    release: () => {
      storage.released = true; // never allocated through a backend: nothing to hand back
      t.dispose();
    },
  };
}

export function memorySuite({ device, numRuns }: SuiteContext): void {
  describe('data access, in-place ops, memory', () => {
    it('data()/toArray()/item() read any layout asynchronously', async () => {
      await fc.assert(
        fc.asyncProperty(arbInput('float'), async (inp) => {
          const bag = new Bag();
          try {
            const x = bag.add(inp.make(device));
            const d = await x.data();
            expect(d).toBeInstanceOf(Float32Array);
            expect(Array.from(d)).toEqual(inp.ref.data);
            // toArray nests by the shape
            const nested = await x.toArray();
            const flat: number[] = [];
            const walk = (v: lr.NestedArray, depth: number): void => {
              if (depth === inp.ref.shape.length) {
                flat.push(v as number);
                return;
              }
              expect(Array.isArray(v) && v.length === inp.ref.shape[depth]).toBe(true);
              for (const e of v as lr.NestedArray[]) walk(e, depth + 1);
            };
            if (inp.ref.data.length > 0 || inp.ref.shape.length > 0) walk(nested, 0);
            if (inp.ref.data.length > 0) expect(flat).toEqual(inp.ref.data);
            if (inp.ref.data.length === 1) expect(await x.item()).toBe(inp.ref.data[0]);
            else await expect(x.item()).rejects.toThrow(/^item: expected a tensor with one element/);
          } finally {
            bag.dispose();
          }
        }),
        { numRuns },
      );
    });

    it('add_/mul_/copy_/zero_ write through views into the shared storage', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbInput('float', 3, 4).filter((i) => i.ref.shape.length > 0),
          fc.double({ min: -2, max: 2, noNaN: true }),
          async (inp, alpha) => {
            const bag = new Bag();
            try {
              const a = Math.fround(alpha);
              const x = bag.add(inputOf(inp.ref.shape, 'float', 'contiguous', 7).make(device));
              const xs = await read(x);
              const y = bag.add(inp.make(device));
              expect(x.add_(y, 2)).toBe(x);
              let want = f32(zip(xs, inp.ref, (p, q) => p + 2 * q));
              assertClose(await read(x), want, EXACT, 'add_ alpha');
              x.mul_(a);
              want = f32(map(want, (v) => v * a));
              assertClose(await read(x), want, EXACT, 'mul_');
              // copy_ of a broadcast row into a strided view of x: the base sees the change
              const rank = inp.ref.shape.length;
              const last = inp.ref.shape[rank - 1];
              const viewOfX = bag.add(x.slice(0, 0, undefined, 2));
              const row = bag.add(lr.arange(0, viewOfX.shape[rank - 1], 1, { device }));
              viewOfX.copy_(row);
              const col = (pos: number[]) => (rank === 1 ? pos[0] / 2 : pos[rank - 1]);
              want = build(inp.ref.shape, (pos) =>
                pos[0] % 2 === 0 ? col(pos) : want.data[ravel(pos, want.shape)],
              );
              assertClose(await read(x), want, EXACT, 'copy_ through a view');
              viewOfX.zero_();
              want = build(inp.ref.shape, (pos) =>
                pos[0] % 2 === 0 ? 0 : want.data[ravel(pos, want.shape)],
              );
              assertClose(await read(x), want, EXACT, 'zero_ through a view');
              expect(() => x.copy_(bag.add(lr.zeros([last + 1, 7], { device })))).toThrow(
                /^copy_: cannot write a tensor of shape/,
              );
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('dispose frees storage once the last view goes; tidy keeps only what it returns; memory() counts bytes', async () => {
      const start = lr.memory();
      const x = lr.zeros([4, 8], { device });
      const afterX = lr.memory();
      expect(afterX.numTensors).toBe(start.numTensors + 1);
      expect(afterX.numBytes - start.numBytes).toBeGreaterThanOrEqual(4 * 8 * 4);
      expect(afterX.devices[device]?.tensors).toBe((start.devices[device]?.tensors ?? 0) + 1);
      const v = x.transpose(0, 1);
      x.dispose();
      expect(x.isDisposed).toBe(true);
      x.dispose(); // idempotent
      expect(lr.memory().numBytes).toBe(afterX.numBytes); // v still holds the storage
      expect(Array.from(await v.data())).toEqual(new Array(32).fill(0));
      v.dispose();
      expect(lr.memory().numBytes).toBe(start.numBytes);
      expect(lr.memory().numTensors).toBe(start.numTensors);

      const kept = lr.tidy(() => {
        const a = lr.ones([3], { device });
        const b = a.add(1).mul(2);
        lr.keep(a.mul(3)).dispose();
        return { b, list: [b.sum()] };
      });
      expect(lr.memory().numTensors).toBe(start.numTensors + 2);
      expect(Array.from(await kept.b.data())).toEqual([4, 4, 4]);
      expect(await kept.list[0].item()).toBe(12);
      lr.dispose(kept);
      expect(lr.memory().numTensors).toBe(start.numTensors);
      expect(() =>
        lr.tidy(() => {
          lr.ones([2], { device });
          throw new Error('boom');
        }),
      ).toThrow('boom');
      expect(lr.memory().numTensors).toBe(start.numTensors);

      // a loop of ops does not leak
      const w = lr.randn([4, 4], { device });
      const before = lr.memory();
      for (let i = 0; i < 20; i++) {
        lr.tidy(() => {
          const h = w.matmul(w).relu().softmax(-1);
          return lr.cat(h.split(2, 0), 0).sum();
        }).dispose();
      }
      expect(lr.memory().numTensors).toBe(before.numTensors);
      expect(lr.memory().numBytes).toBe(before.numBytes);
      w.dispose();
    });

    it('using a disposed tensor throws an error naming the op', async () => {
      const x = lr.ones([2, 3], { device });
      const i = lr.tensor([0, 1], { dtype: 'int32', device });
      const y = lr.ones([3, 2], { device });
      x.dispose();
      const cases: [string, () => unknown][] = [
        ['add', () => x.add(1)],
        ['exp', () => x.exp()],
        ['sum', () => x.sum()],
        ['max', () => x.max(0)],
        ['softmax', () => x.softmax(-1)],
        ['matmul', () => x.matmul(y)],
        ['reshape', () => x.reshape([6])],
        ['permute', () => x.permute([1, 0])],
        ['slice', () => x.slice(0, 0, 1)],
        ['expand', () => x.expand([2, 2, 3])],
        ['contiguous', () => x.contiguous()],
        ['indexSelect', () => x.indexSelect(0, i)],
        ['gather', () => x.gather(0, i.reshape([1, 2]))],
        ['cat', () => lr.cat([x, x])],
        ['where', () => lr.where(i.bool(), x, 0)],
        ['cast', () => x.int()],
        ['add_', () => x.add_(1)],
        ['copy_', () => x.copy_(i)],
        ['mul_', () => x.mul_(2)],
        ['zero_', () => x.zero_()],
        ['view', () => x.view([6])],
        ['transpose', () => x.transpose(0, 1)],
        ['narrow', () => x.narrow(0, 0, 1)],
        ['squeeze', () => x.squeeze()],
        ['unsqueeze', () => x.unsqueeze(0)],
        ['flatten', () => x.flatten()],
        ['split', () => x.split(1)],
        ['chunk', () => x.chunk(2)],
        ['stack', () => lr.stack([x, x])],
        ['mean', () => x.mean()],
        ['var', () => x.var()],
        ['std', () => x.std()],
        ['logsumexp', () => x.logsumexp(1)],
        ['logSoftmax', () => x.logSoftmax(1)],
        ['argmax', () => x.argmax()],
        ['clamp', () => x.clamp(0, 1)],
        ['gelu', () => x.gelu()],
        ['triu', () => x.triu()],
        ['tril', () => x.tril()],
        ['embedding', () => lr.embedding(x, i)],
        ['scatterAdd', () => x.scatterAdd(0, i.reshape([1, 2]), y.reshape([1, 6]))],
        ['indexAdd', () => x.indexAdd(1, i, y.reshape([2, 3]).narrow(1, 0, 2))],
      ];
      const wrong: string[] = [];
      for (const [op, fn] of cases) {
        // tidy disposes helper tensors a case makes before it throws
        try {
          lr.tidy(fn);
          wrong.push(`${op}: did not throw`);
        } catch (e) {
          const msg = (e as Error).message;
          if (!new RegExp(`^${op}: tensor #${x.id} \\[2,3\\] was disposed`).test(msg))
            wrong.push(`${op}: threw '${msg}'`);
        }
      }
      expect(wrong).toEqual([]);
      for (const op of ['toArray', 'item'] as const) {
        await expect(x[op]()).rejects.toThrow(/^(data|toArray|item): /);
      }
      await expect(x.data()).rejects.toThrow(/^data: tensor #\d+ \[2,3\] was disposed/);
      lr.dispose(i, y);
    });

    it('mixing devices throws naming the op and both devices', () => {
      const x = lr.ones([2, 2], { device });
      const { t, release } = otherDeviceTensor(device);
      try {
        expect(() => lr.add(x, t)).toThrow(
          new RegExp(`^add: expected all tensors on the same device, got '${device}' and '${t.device}'`),
        );
        expect(() => lr.matmul(x, t)).toThrow(/^matmul: expected all tensors on the same device/);
        expect(() => lr.cat([x, t])).toThrow(/^cat: expected all tensors on the same device/);
      } finally {
        release();
        x.dispose();
      }
    });
  });
}
