import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { arbInputOf, assertClose, Bag, f32, inputOf, LAYOUTS, read } from './gen.js';
import type { SuiteContext } from './index.js';
import { refMatmul } from './reference.js';

/** Operand shapes for matmul: 1-D, 2-D and batched with broadcast batch dims. */
const arbMatmulShapes = fc
  .tuple(
    fc.integer({ min: 0, max: 5 }),
    fc.integer({ min: 0, max: 5 }),
    fc.integer({ min: 0, max: 5 }),
    fc.constantFrom('1x1', '1x2', '2x1', '2x2', 'batched', 'bcastA', 'bcastB'),
    fc.integer({ min: 1, max: 3 }),
  )
  .map(([m, k, n, form, b]): [number[], number[]] => {
    switch (form) {
      case '1x1':
        return [[k], [k]];
      case '1x2':
        return [[k], [b, k, n]];
      case '2x1':
        return [[b, m, k], [k]];
      case '2x2':
        return [
          [m, k],
          [k, n],
        ];
      case 'batched':
        return [
          [b, m, k],
          [b, k, n],
        ];
      case 'bcastA':
        return [
          [2, 1, m, k],
          [b, k, n],
        ];
      default:
        return [
          [b, m, k],
          [k, n],
        ];
    }
  });

export function matmulSuite({ device, tol, numRuns }: SuiteContext): void {
  describe('matmul', () => {
    it('matches the triple loop for 1-D, 2-D and broadcast-batched operands of any layout', async () => {
      await fc.assert(
        fc.asyncProperty(
          arbMatmulShapes.chain(([sa, sb]) =>
            fc.tuple(arbInputOf(fc.constant(sa), 'float'), arbInputOf(fc.constant(sb), 'float')),
          ),
          async ([ia, ib]) => {
            const bag = new Bag();
            try {
              const out = bag.add(lr.matmul(bag.add(ia.make(device)), bag.add(ib.make(device))));
              assertClose(
                await read(out),
                f32(refMatmul(ia.ref, ib.ref)),
                tol.matmul,
                `matmul ${ia.layout}@${ib.layout}`,
              );
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('larger odd sizes cross the CPU blocking boundaries (k > 256, edge tiles), transposed operands', async () => {
      const bag = new Bag();
      try {
        for (const [m, k, n] of [
          [5, 300, 7],
          [67, 9, 70],
          [1, 513, 3],
          [13, 0, 4],
        ]) {
          for (const layout of LAYOUTS) {
            const a = inputOf([m, k], 'unit', layout, m * 31 + k);
            const b = inputOf([k, n], 'unit', layout === 'permuted' ? 'contiguous' : 'permuted', n * 17 + k);
            const out = bag.add(lr.matmul(bag.add(a.make(device)), bag.add(b.make(device))));
            assertClose(
              await read(out),
              f32(refMatmul(a.ref, b.ref)),
              tol.matmul,
              `matmul [${m},${k}]@[${k},${n}] ${layout}`,
            );
          }
        }
      } finally {
        bag.dispose();
      }
    });

    it('(A@B)ᵀ = Bᵀ@Aᵀ and (A@B)@C = A@(B@C)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.tuple(
            fc.integer({ min: 1, max: 5 }),
            fc.integer({ min: 1, max: 5 }),
            fc.integer({ min: 1, max: 5 }),
            fc.integer({ min: 1, max: 5 }),
          ),
          fc.nat(),
          async ([m, k, n, p], seed) => {
            const bag = new Bag();
            try {
              const a = bag.add(inputOf([m, k], 'unit', 'contiguous', seed).make(device));
              const b = bag.add(inputOf([k, n], 'unit', 'permuted', seed + 1).make(device));
              const c = bag.add(inputOf([n, p], 'unit', 'strided', seed + 2).make(device));
              const ab = bag.add(a.matmul(b));
              const lhs = bag.add(ab.T);
              const rhs = bag.add(bag.add(b.T).matmul(bag.add(a.T)));
              assertClose(await read(lhs), await read(rhs), tol.matmul, '(AB)ᵀ = BᵀAᵀ');
              const left = bag.add(ab.matmul(c));
              const right = bag.add(a.matmul(bag.add(b.matmul(c))));
              assertClose(await read(left), await read(right), tol.matmul, '(AB)C = A(BC)');
            } finally {
              bag.dispose();
            }
          },
        ),
        { numRuns },
      );
    });

    it('matmul errors name the op and the shapes', () => {
      const bag = new Bag();
      try {
        const a = bag.add(lr.zeros([2, 3], { device }));
        const b = bag.add(lr.zeros([4, 5], { device }));
        expect(() => lr.matmul(a, b)).toThrow('matmul: inner dimensions differ: [2,3] @ [4,5]');
        const i = bag.add(lr.zeros([3, 2], { dtype: 'int32', device }));
        expect(() => lr.matmul(a, i)).toThrow(/^matmul: expected float32 operands, got float32 @ int32/);
        const s = bag.add(lr.tensor(1, { device }));
        expect(() => lr.matmul(s, a)).toThrow(/^matmul: both operands need at least 1 dim/);
        const x = bag.add(lr.zeros([2, 2, 3], { device }));
        const y = bag.add(lr.zeros([3, 3, 4], { device }));
        expect(() => lr.matmul(x, y)).toThrow(/^matmul: shapes \[2\] and \[3\] cannot be broadcast/);
      } finally {
        bag.dispose();
      }
    });
  });
}
