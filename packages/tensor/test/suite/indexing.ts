import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { arbInputOf, arbShape, assertClose, Bag, EXACT, inputOf, read, upload } from './gen.js';
import type { SuiteContext } from './index.js';
import { build, prng, type Ref, ravel, unravel } from './reference.js';

/** Random int32 indices in [0, size) of `shape` (a negative index is an error). */
function indices(shape: readonly number[], size: number, seed: number): Ref {
  const r = prng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data: number[] = [];
  for (let i = 0; i < n; i++) data.push(Math.floor(r() * size));
  return { shape: [...shape], data };
}

const arbNonEmpty = (maxRank = 3) => arbInputOf(arbShape(1, maxRank, 4, 1), 'float');

export function indexingSuite({ device, numRuns }: SuiteContext): void {
  describe('indexing and combining', () => {
    it('gather along a dim (torch.gather) with an index no larger than the input', async () => {
      await fc.assert(
        fc.asyncProperty(arbNonEmpty(), fc.nat(), async (inp, seed) => {
          const bag = new Bag();
          try {
            const r = prng(seed);
            const rank = inp.ref.shape.length;
            const dim = seed % rank;
            const ishape = inp.ref.shape.map((d, i) =>
              i === dim ? Math.floor(r() * 4) : Math.floor(r() * (d + 1)),
            );
            const idx = indices(ishape, inp.ref.shape[dim], seed);
            const out = bag.add(bag.add(inp.make(device)).gather(dim, bag.add(upload(idx, 'int32', device))));
            const want = build(ishape, (pos) => {
              const src = [...pos];
              src[dim] = idx.data[ravel(pos, ishape)];
              return inp.ref.data[ravel(src, inp.ref.shape)];
            });
            assertClose(await read(out), want, EXACT, 'gather');
          } finally {
            bag.dispose();
          }
        }),
        { numRuns },
      );
    });

    it('indexSelect and embedding pick slices at 1-D / any-shape int32 ids', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbNonEmpty(),
          fc.nat(),
          fc.integer({ min: 0, max: 6 }),
          async (inp, seed, count) => {
            const bag = new Bag();
            try {
              const rank = inp.ref.shape.length;
              const dim = seed % rank;
              const idx = indices([count], inp.ref.shape[dim], seed);
              const x = bag.add(inp.make(device));
              const out = bag.add(x.indexSelect(dim - rank, bag.add(upload(idx, 'int32', device))));
              const shape = inp.ref.shape.map((d, i) => (i === dim ? count : d));
              const want = build(shape, (pos) => {
                const src = [...pos];
                src[dim] = idx.data[pos[dim]];
                return inp.ref.data[ravel(src, inp.ref.shape)];
              });
              assertClose(await read(out), want, EXACT, 'indexSelect');
              // embedding: weight [V, D], ids of shape [2, count]
              const V = inp.ref.shape[0];
              const D = inp.ref.data.length / V;
              const w = bag.add(x.reshape([V, D]));
              const ids = indices([2, count], V, seed + 1);
              const emb = bag.add(lr.embedding(w, bag.add(upload(ids, 'int32', device))));
              const wantE = build(
                [2, count, D],
                ([i, j, d]) => inp.ref.data[ids.data[i * count + j] * D + d],
              );
              assertClose(await read(emb), wantE, EXACT, 'embedding');
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('scatterAdd and indexAdd accumulate repeated indices', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbNonEmpty(),
          fc.nat(),
          fc.integer({ min: 0, max: 5 }),
          async (inp, seed, count) => {
            const bag = new Bag();
            try {
              const rank = inp.ref.shape.length;
              const dim = seed % rank;
              const size = inp.ref.shape[dim];
              const target = bag.add(inp.make(device));
              // scatterAdd: index and src of shape with `count` along dim
              const shape = inp.ref.shape.map((d, i) => (i === dim ? count : d));
              const idx = indices(shape, size, seed);
              const src = inputOf(shape, 'float', 'permuted', seed + 3);
              const out = bag.add(
                target.scatterAdd(dim, bag.add(upload(idx, 'int32', device)), bag.add(src.make(device))),
              );
              const want = { shape: [...inp.ref.shape], data: [...inp.ref.data] };
              for (let f = 0; f < idx.data.length; f++) {
                const pos = unravel(f, shape);
                pos[dim] = idx.data[f];
                want.data[ravel(pos, want.shape)] += src.ref.data[f];
              }
              assertClose(await read(out), want, EXACT, 'scatterAdd');
              // indexAdd: a 1-D index of `count` positions
              const idx1 = indices([count], size, seed + 5);
              const out2 = bag.add(
                target.indexAdd(dim, bag.add(upload(idx1, 'int32', device)), bag.add(src.make(device))),
              );
              const want2 = { shape: [...inp.ref.shape], data: [...inp.ref.data] };
              for (let f = 0; f < src.ref.data.length; f++) {
                const pos = unravel(f, shape);
                pos[dim] = idx1.data[pos[dim]];
                want2.data[ravel(pos, want2.shape)] += src.ref.data[f];
              }
              assertClose(await read(out2), want2, EXACT, 'indexAdd');
              // the target itself is unchanged (out of place)
              assertClose(await read(target), inp.ref, EXACT, 'target untouched');
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('cat ∘ split = id, chunk sizes, stack = cat of unsqueezed', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbNonEmpty(3),
          fc.nat(),
          fc.integer({ min: 1, max: 4 }),
          async (inp, seed, size) => {
            const bag = new Bag();
            try {
              const rank = inp.ref.shape.length;
              const dim = seed % rank;
              const x = bag.add(inp.make(device));
              const parts = bag.add(x.split(size, dim));
              const n = inp.ref.shape[dim];
              expect(parts.map((p) => p.shape[dim])).toEqual(
                Array.from({ length: Math.ceil(n / size) }, (_, i) => Math.min(size, n - i * size)),
              );
              for (const p of parts) expect(p.storage).toBe(x.storage);
              assertClose(await read(bag.add(lr.cat(parts, dim - rank))), inp.ref, EXACT, 'cat∘split');
              const sections = [n - Math.min(n, size), Math.min(n, size)];
              const secs = bag.add(x.split(sections, dim));
              assertClose(await read(bag.add(lr.cat(secs, dim))), inp.ref, EXACT, 'cat∘split(sections)');
              const chunks = bag.add(x.chunk(size, dim));
              expect(chunks.length).toBeLessThanOrEqual(size);
              assertClose(await read(bag.add(lr.cat(chunks, dim))), inp.ref, EXACT, 'cat∘chunk');
              // stack of 3 copies along a new dim
              const sd = seed % (rank + 1);
              const st = bag.add(lr.stack([x, x, x], sd));
              const wantShape = [...inp.ref.shape];
              wantShape.splice(sd, 0, 3);
              const want = build(
                wantShape,
                (pos) =>
                  inp.ref.data[
                    ravel(
                      pos.filter((_, i) => i !== sd),
                      inp.ref.shape,
                    )
                  ],
              );
              assertClose(await read(st), want, EXACT, 'stack');
              // cat promotes dtypes
              const xi = bag.add(x.int());
              const mixed = bag.add(lr.cat([xi, x], dim));
              expect(mixed.dtype).toBe('float32');
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('oneHot and triu/tril (any diagonal, batched, views); triu(k) + tril(k−1) = x', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbInputOf(arbShape(2, 3, 5), 'float'),
          fc.integer({ min: -4, max: 4 }),
          async (inp, k) => {
            const bag = new Bag();
            try {
              const x = bag.add(inp.make(device));
              const rank = inp.ref.shape.length;
              const keep = (pos: number[], upper: boolean, diag: number) => {
                const d = pos[rank - 1] - pos[rank - 2];
                return upper ? d >= diag : d <= diag;
              };
              const up = bag.add(x.triu(k));
              const lo = bag.add(x.tril(k - 1));
              const ref = (upper: boolean, diag: number) =>
                build(inp.ref.shape, (pos) =>
                  keep(pos, upper, diag) ? inp.ref.data[ravel(pos, inp.ref.shape)] : 0,
                );
              assertClose(await read(up), ref(true, k), EXACT, 'triu');
              assertClose(await read(bag.add(x.tril(k))), ref(false, k), EXACT, 'tril');
              assertClose(await read(bag.add(up.add(lo))), inp.ref, EXACT, 'triu(k) + tril(k−1)');
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
      const bag = new Bag();
      try {
        const ids = bag.add(
          lr.tensor(
            [
              [0, 2],
              [1, 0],
            ],
            { dtype: 'int32', device },
          ),
        );
        const oh = bag.add(lr.oneHot(ids, 3));
        expect(oh.dtype).toBe('int32');
        expect(await oh.toArray()).toEqual([
          [
            [1, 0, 0],
            [0, 0, 1],
          ],
          [
            [0, 1, 0],
            [1, 0, 0],
          ],
        ]);
      } finally {
        bag.dispose();
      }
    });

    it('indexing errors name the op and what was expected', async () => {
      const bag = new Bag();
      try {
        const x = bag.add(lr.zeros([3, 4], { device }));
        const fi = bag.add(lr.zeros([2], { device }));
        const ii = bag.add(lr.tensor([0, 5], { dtype: 'int32', device }));
        expect(() => x.indexSelect(0, fi)).toThrow(
          /^indexSelect: index must be an int32 tensor, got float32/,
        );
        const outOfRange = /^indexSelect: index 5 is out of bounds for a dimension of size 3/;
        if (device === 'cpu') expect(() => x.indexSelect(0, ii)).toThrow(outOfRange);
        else {
          // a GPU checks indices in the kernel: the error surfaces at the next read-back
          const bad = bag.add(x.indexSelect(0, ii));
          await expect(bad.data()).rejects.toThrow(outOfRange);
        }
        // a negative index is out of range too (it does not count from the end), in every op
        const neg = bag.add(lr.tensor([1, -1], { dtype: 'int32', device }));
        const neg2 = bag.add(lr.tensor([[0], [-1]], { dtype: 'int32', device }));
        const w = bag.add(lr.zeros([3, 2], { device }));
        const cases: [RegExp, () => lr.Tensor][] = [
          [/^indexSelect: index -1 is out of bounds for a dimension of size 3/, () => x.indexSelect(0, neg)],
          [/^gather: index -1 is out of bounds for a dimension of size 4/, () => x.gather(1, neg2)],
          [/^indexSelect: index -1 is out of bounds for a dimension of size 3/, () => lr.embedding(w, neg)],
        ];
        for (const [message, run] of cases) {
          if (device === 'cpu') expect(run).toThrow(message);
          else await expect(bag.add(run()).data()).rejects.toThrow(message);
        }
        expect(() => x.gather(0, ii)).toThrow(/^gather: index must have the input's rank 2/);
        expect(() => lr.embedding(ii, ii)).toThrow(/^embedding: weight must be 2-D/);
        const y = bag.add(lr.zeros([2, 5], { device }));
        expect(() => lr.cat([x, y], 0)).toThrow(
          /^cat: shapes must match except in dim 0: \[3,4\] vs \[2,5\]/,
        );
        expect(() => lr.stack([x, y])).toThrow(/^stack: all tensors must have the same shape/);
        expect(() => x.split([1, 1], 0)).toThrow(/^split: sections \[1,1\] do not add up to dim 0 of size 3/);
        expect(() => x.chunk(0)).toThrow(/^chunk: chunks must be a positive integer/);
        expect(() => lr.oneHot(ii, 0)).toThrow(/^oneHot: numClasses must be a positive integer/);
        expect(() => fi.triu()).toThrow(/^triu: expected at least 2 dims, got \[2\]/);
        const src = bag.add(lr.zeros([3, 4], { dtype: 'int32', device }));
        expect(() => x.scatterAdd(0, bag.add(lr.zeros([3, 4], { dtype: 'int32', device })), src)).toThrow(
          /^scatterAdd: src dtype int32 differs from target float32/,
        );
        expect(() => x.indexAdd(0, ii, x)).toThrow(/^indexAdd: src must have shape \[2,4\], got \[3,4\]/);
      } finally {
        bag.dispose();
      }
    });
  });
}
