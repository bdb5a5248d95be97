import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BinaryOp, DType, Tensor } from '../../src/index.js';
import * as lr from '../../src/index.js';
import { compare, EXACT, initWebGPU, type Kind, randomTensor, type Tolerance } from './helpers.js';

/**
 * Every kernel of the WebGPU backend against the CPU backend on random inputs: odd sizes and sizes
 * that are not multiples of the workgroup size, broadcasting, non-contiguous views (transposes,
 * stepped slices, expanded dims, offsets), every dtype, NaN/±inf/±0.
 *
 * Tolerances (GPU vs CPU, |gpu − cpu| ≤ atol + rtol·|cpu|):
 * - exact: copies, casts, comparisons, logical ops, int32 arithmetic, add/sub/mul/neg/abs/square,
 *   floor/ceil/round, relu, sign, max/min/argmax/argmin, gather/indexSelect, where, fill/assign,
 *   scatterAdd/indexAdd (same summation order as the CPU).
 * - rtol 2e-6: div, reciprocal, sqrt, rsqrt (WGSL allows 2.5 ulp for division).
 * - rtol 1e-5, atol 1e-6: exp, log, tanh, sigmoid, silu, gelu (both), pow, sin, cos (|x| ≤ 3).
 * - sum/prod/mean: rtol 1e-5, atol 1e-5·√n (tree order vs the CPU's compensated sum).
 * - matmul: atol 1e-5·k, rtol 1e-5 (different summation order).
 */

const skip = await initWebGPU();

const TOL: Record<string, Tolerance> = {
  exact: EXACT,
  div: { rtol: 2e-6, atol: 0 },
  transcendental: { rtol: 1e-5, atol: 1e-6 },
};

const UNARY_TOL: Record<string, Tolerance> = {
  exp: TOL.transcendental,
  log: TOL.transcendental,
  sqrt: TOL.div,
  rsqrt: TOL.div,
  tanh: TOL.transcendental,
  sigmoid: TOL.transcendental,
  silu: TOL.transcendental,
  gelu: TOL.transcendental,
  geluTanh: TOL.transcendental,
  reciprocal: TOL.div,
  sin: TOL.transcendental,
  cos: TOL.transcendental,
};

// The one-input ops of the table (expr/table.ts): the gelus get their own cases below (they take
// an option), and the integer forms are the ops with an integer WGSL form that stay integer.
type MethodOp = Exclude<lr.UnaryOp, 'geluTanh' | 'geluErf'>;
const isMethod = (op: lr.UnaryOp): op is MethodOp => op !== 'geluTanh' && op !== 'geluErf';
const FLOAT_UNARY = lr.UNARY_OPS.filter(isMethod);
const INT_UNARY = FLOAT_UNARY.filter(
  (op) => lr.SCALAR_OPS[op].wgsl.i && lr.SCALAR_OPS[op].result !== 'float',
);

/** Shapes and views: each gives a tensor of the same values through a different layout. */
const VIEWS: { name: string; shape: number[]; view: (t: Tensor) => Tensor }[] = [
  { name: 'scalar', shape: [], view: (t) => t },
  { name: 'empty', shape: [0, 3], view: (t) => t },
  { name: '1', shape: [1], view: (t) => t },
  { name: '257', shape: [257], view: (t) => t },
  { name: '3x5x7', shape: [3, 5, 7], view: (t) => t },
  { name: 'transposed', shape: [6, 9], view: (t) => t.T },
  { name: 'permuted+sliced', shape: [4, 5, 6], view: (t) => t.permute(2, 0, 1).slice(0, 1, 6, 2) },
  { name: 'expanded', shape: [5, 1], view: (t) => t.expand(5, 7) },
  { name: 'narrowed offset', shape: [7, 9], view: (t) => t.narrow(0, 2, 4).narrow(1, 3, 5) },
];

describe.skipIf(skip !== null)(`webgpu vs cpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  afterAll(() => lr.destroyWebGPU());

  it('registers every kernel', () => {
    expect(lr.missingKernels('webgpu', lr.KERNEL_NAMES)).toEqual([]);
  });

  it('unary ops, float32, every layout (special values included)', async () => {
    for (const v of VIEWS) {
      for (const op of FLOAT_UNARY) {
        // sin/cos: WGSL is accurate after range reduction only for moderate |x| (documented)
        const x = randomTensor(v.shape, op === 'sin' || op === 'cos' ? 'trig' : 'special', 7);
        const tol = UNARY_TOL[op] ?? EXACT;
        await compare(
          `${op} ${v.name}`,
          [x],
          (t) => {
            const view = v.view(t);
            return (view[op] as () => Tensor).call(view);
          },
          tol,
        );
        x.dispose();
      }
      const y = randomTensor(v.shape, 'float32', 8);
      await compare(`gelu ${v.name}`, [y], (t) => v.view(t).gelu(), TOL.transcendental);
      await compare(
        `gelu tanh ${v.name}`,
        [y],
        (t) => v.view(t).gelu({ approximate: 'tanh' }),
        TOL.transcendental,
      );
      y.dispose();
    }
  });

  it('unary ops, int32 and bool (and float-result ops on ints)', async () => {
    for (const v of VIEWS) {
      const x = randomTensor(v.shape, 'int32', 3);
      for (const op of INT_UNARY) {
        await compare(`${op} int ${v.name}`, [x], (t) => (v.view(t)[op] as () => Tensor).call(v.view(t)));
      }
      await compare(`exp int ${v.name}`, [x], (t) => v.view(t).exp(), TOL.transcendental);
      const b = randomTensor(v.shape, 'bool', 4);
      await compare(`logicalNot bool ${v.name}`, [b], (t) => v.view(t).logicalNot());
      await compare(`neg bool refused ${v.name}`, [b], (t) => v.view(t).neg());
      lr.dispose(x, b);
    }
  });

  // every two-input op of the table (expr/table.ts), compared with the CPU
  const BINARY: readonly BinaryOp[] = lr.BINARY_OPS;
  const PAIRS: [number[], number[]][] = [
    [[], []],
    [[257], [257]],
    [
      [3, 1, 5],
      [4, 1],
    ],
    [[1], [6, 7]],
    [
      [2, 3, 4, 5],
      [3, 1, 5],
    ],
    [
      [0, 4],
      [1, 4],
    ],
  ];

  it('binary ops, every dtype combination, broadcasting', async () => {
    const kinds: Kind[] = ['special', 'int32', 'bool'];
    for (const [sa, sb] of PAIRS) {
      for (const ka of kinds) {
        for (const kb of kinds) {
          const a = randomTensor(sa, ka, 11);
          const b = randomTensor(sb, kb, 12);
          for (const op of BINARY) {
            const tol = op === 'div' ? TOL.div : op === 'pow' ? TOL.transcendental : EXACT;
            await compare(
              `${op} ${ka}[${sa}] ${kb}[${sb}]`,
              [a, b],
              (x, y) => (x[op] as (o: Tensor) => Tensor).call(x, y),
              tol,
            );
          }
          lr.dispose(a, b);
        }
      }
    }
  });

  it('binary ops on non-contiguous views and with number operands', async () => {
    const a = randomTensor([6, 8], 'float32', 1);
    const b = randomTensor([8, 6], 'float32', 2);
    const p = randomTensor([6, 8], 'positive', 3);
    for (const op of BINARY) {
      const tol = op === 'div' ? TOL.div : op === 'pow' ? TOL.transcendental : EXACT;
      await compare(
        `${op} view`,
        [a, b],
        (x, y) =>
          (x.slice(0, 1, 6, 2)[op] as (o: Tensor) => Tensor).call(x.slice(0, 1, 6, 2), y.T.slice(0, 1, 6, 2)),
        tol,
      );
      await compare(`${op} number`, [p], (x) => (x[op] as (o: number) => Tensor).call(x, 1.5), tol);
    }
    await compare('pow negative base, integer exponents', [a], (x) => x.pow(3), TOL.transcendental);
    const i = randomTensor([5, 5], 'int32', 4);
    await compare('int pow', [i], (x) =>
      x.pow(lr.tensor([0, 1, 2, 3, -1], { dtype: 'int32', device: x.device })),
    );
    await compare('int add number', [i], (x) => x.add(7).mul(-3).sub(2));
    lr.dispose(a, b, p, i);
  });

  it('where and cast (all dtype pairs) and clamp', async () => {
    const dtypes: DType[] = ['float32', 'int32', 'bool'];
    const kindOf: Record<DType, Kind> = { float32: 'special', int32: 'int32', bool: 'bool' };
    for (const from of dtypes) {
      const x = randomTensor([5, 7], kindOf[from], 21);
      for (const to of dtypes) {
        await compare(`cast ${from}->${to}`, [x], (t) => t.T.cast(to));
      }
      const cond = randomTensor([5, 1], 'bool', 22);
      const y = randomTensor([7], kindOf[from], 23);
      await compare(`where ${from}`, [cond, x, y], (c, a, b) => lr.where(c, a, b));
      await compare(`where ${from} scalar`, [cond, x], (c, a) => lr.where(c, a, 0));
      lr.dispose(x, cond, y);
    }
    const big = lr.tensor([
      3e9,
      -3e9,
      1e20,
      2147483647.5,
      -2147483648,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      -7.9,
    ]);
    await compare('cast wraps like the CPU', [big], (t) => t.cast('int32'));
    const z = randomTensor([9, 4], 'special', 24);
    await compare('clamp', [z], (t) => t.clamp(-1, 2));
    lr.dispose(big, z);
  });

  it('copies, reshape of views, cat, stack, split, fill_, copy_ into views (overlapping too)', async () => {
    const x = randomTensor([4, 6, 5], 'float32', 31);
    await compare('contiguous of permute', [x], (t) => t.permute(2, 0, 1).contiguous());
    await compare('reshape of transposed', [x], (t) => t.transpose(0, 2).reshape([-1]));
    await compare('cat', [x], (t) => lr.cat([t, t.mul(2), t.slice(0, 0, 1)], 0));
    await compare('cat dim 2', [x], (t) => lr.cat([t, t.narrow(2, 1, 2)], 2));
    await compare('stack', [x], (t) => lr.stack([t, t], 1));
    const i = randomTensor([3, 4], 'int32', 32);
    const b = randomTensor([3, 4], 'bool', 33);
    await compare('cat int/bool promote', [i, b], (p, q) => lr.cat([p, q], 1));
    await compare('fill_ on a view', [x], (t) => {
      const c = t.clone();
      c.narrow(1, 1, 3).fill_(7.5);
      return c;
    });
    await compare('copy_ into a transposed view', [x], (t) => {
      const c = t.clone();
      c.transpose(1, 2)
        .narrow(0, 1, 2)
        .copy_(lr.ones([2, 5, 6], { device: t.device }).mul(3));
      return c;
    });
    await compare('copy_ overlapping (same storage)', [x], (t) => {
      const c = t.clone();
      c.narrow(0, 0, 3).copy_(c.narrow(0, 1, 3));
      return c;
    });
    await compare(
      'in-place add_/mul_/div_/sub_',
      [x],
      (t) => {
        const c = t.clone();
        c.add_(1, 2).mul_(t).sub_(0.5).div_(3);
        return c;
      },
      TOL.div,
    );
    await compare('fill_ int', [i], (t) => {
      const c = t.clone();
      c.fill_(-4);
      return c;
    });
    lr.dispose(x, i, b);
  });

  it('reductions over every dim set, keepdim, every dtype, NaN propagation', async () => {
    const shapes = [[7], [3, 5], [4, 1, 6], [2, 3, 4, 5], [300, 3]];
    const dimsets = (rank: number): (number[] | undefined)[] => {
      const out: (number[] | undefined)[] = [undefined];
      for (let d = 0; d < rank; d++) out.push([d]);
      if (rank > 2) out.push([0, rank - 1], [1, 2]);
      return out;
    };
    for (const shape of shapes) {
      for (const kind of ['float32', 'special', 'int32', 'bool'] as Kind[]) {
        const x = randomTensor(shape, kind, 41);
        for (const dims of dimsets(shape.length)) {
          const n = dims ? dims.reduce((a, d) => a * shape[d], 1) : x.size;
          const sumTol =
            kind === 'float32' || kind === 'special' ? { rtol: 1e-5, atol: 1e-5 * Math.sqrt(n) } : EXACT;
          const sums = true;
          if (sums) await compare(`sum ${kind} [${shape}] ${dims}`, [x], (t) => t.sum(dims, true), sumTol);
          if (sums)
            await compare(
              `sum view ${kind} [${shape}] ${dims}`,
              [x],
              (t) => t.T.contiguous().T.sum(dims),
              sumTol,
            );
          if (kind !== 'bool') await compare(`max ${kind} [${shape}] ${dims}`, [x], (t) => t.max(dims));
          if (kind !== 'bool') await compare(`min ${kind} [${shape}] ${dims}`, [x], (t) => t.min(dims, true));
          if (sums) await compare(`mean ${kind} [${shape}] ${dims}`, [x], (t) => t.mean(dims), sumTol);
          if (kind === 'int32')
            await compare(`prod int [${shape}] ${dims}`, [x], (t) => t.narrow(0, 0, 1).prod(dims));
        }
        for (let d = 0; d < shape.length; d++) {
          await compare(`argmax ${kind} [${shape}] ${d}`, [x], (t) => t.argmax(d));
          await compare(`argmin ${kind} [${shape}] ${d}`, [x], (t) => t.argmin(d, true));
        }
        await compare(`argmax flat ${kind} [${shape}]`, [x], (t) => t.argmax());
        x.dispose();
      }
    }
    const p = randomTensor([4, 9], 'positive', 42);
    await compare('prod float', [p], (t) => t.prod(1), { rtol: 1e-5, atol: 0 });
    await compare('softmax', [p], (t) => t.softmax(-1), TOL.transcendental);
    await compare('logsumexp', [p], (t) => t.logsumexp(0), TOL.transcendental);
    p.dispose();
  });

  it('long rows (two-pass chunked reduction) and rows per invocation', async () => {
    const long = randomTensor([2, 40000], 'float32', 51);
    await compare('sum long rows', [long], (t) => t.sum(1), { rtol: 1e-4, atol: 1e-3 });
    await compare('max long rows', [long], (t) => t.max(1));
    await compare('argmax long rows', [long], (t) => t.argmax(1));
    const nan = lr.tensor([1, 2, Number.NaN, 4, Number.POSITIVE_INFINITY], { device: 'cpu' });
    await compare('sum propagates NaN', [nan], (t) => t.sum());
    await compare('max propagates NaN', [nan], (t) => t.max());
    nan.dispose();
    await compare('sum all', [long], (t) => t.sum(), { rtol: 1e-4, atol: 1e-3 });
    const li = randomTensor([40000], 'int32', 52);
    await compare('int sum long', [li], (t) => t.sum());
    const many = randomTensor([1000, 5], 'float32', 53);
    await compare('many short rows', [many], (t) => t.sum(1), { rtol: 1e-6, atol: 1e-6 });
    lr.dispose(long, li, many);
  });

  it('matmul: odd sizes, batches, broadcasting, transposed operands, 1-D, k = 0, every tile config', async () => {
    const cases: [number[], number[], ((t: Tensor) => Tensor)?, ((t: Tensor) => Tensor)?][] = [
      [[5], [5]],
      [[3, 7], [7]],
      [[7], [7, 4]],
      [
        [1, 1],
        [1, 1],
      ],
      [
        [33, 17],
        [17, 29],
      ],
      [
        [64, 32],
        [32, 64],
      ],
      [
        [130, 67],
        [67, 45],
      ],
      [
        [3, 20, 12],
        [3, 12, 9],
      ],
      [
        [2, 3, 20, 12],
        [12, 9],
      ],
      [
        [20, 12],
        [4, 12, 16],
      ],
      [[36, 44], [48, 44], undefined, (t) => t.T],
      [[44, 36], [44, 48], (t) => t.T, undefined],
      [[44, 36], [48, 44], (t) => t.T, (t) => t.T],
      [[3, 12, 20], [3, 9, 12], (t) => t.transpose(1, 2), (t) => t.transpose(1, 2)],
      [[40, 50], [50, 30], (t) => t.slice(1, 1, 50, 2), (t) => t.slice(0, 1, 50, 2)],
      [
        [9, 0],
        [0, 5],
      ],
      [
        [0, 4],
        [4, 3],
      ],
    ];
    // every case with the heuristic; three representative cases with each forced tile config
    // (big unrolled shaders compile slowly on lavapipe)
    const configs = [null, ...Object.keys(lr.MATMUL_CONFIGS)];
    for (const cfg of configs) {
      lr.setMatmulConfig(cfg);
      for (const [sa, sb, fa, fb] of cfg === null ? cases : [cases[cfg.length % 2 === 0 ? 6 : 13]]) {
        const a = randomTensor(sa, 'float32', 61);
        const b = randomTensor(sb, 'float32', 62);
        const k = sa[sa.length - 1];
        await compare(
          `matmul ${cfg} [${sa}]@[${sb}]`,
          [a, b],
          (x, y) => (fa ? fa(x) : x).matmul(fb ? fb(y) : y),
          {
            rtol: 1e-5,
            atol: 1e-5 * Math.max(1, k),
          },
        );
        lr.dispose(a, b);
      }
    }
    lr.setMatmulConfig(null);
  }, 600_000);

  it('gather, indexSelect, embedding, scatterAdd, indexAdd (repeated indices, views)', async () => {
    const x = randomTensor([5, 7], 'float32', 71);
    const xi = randomTensor([5, 7], 'int32', 72);
    const idx = lr.tensor(
      [
        [0, 4, 3],
        [4, 2, 0],
      ],
      { dtype: 'int32', device: 'cpu' },
    );
    await compare('gather dim 0', [x, idx], (t, i) => t.gather(0, i));
    await compare('gather dim 1', [xi, idx], (t, i) => t.gather(1, i));
    await compare('gather from a view', [x, idx], (t, i) => t.T.gather(1, i));
    const sel = lr.tensor([6, 0, 0, 2, 2], { dtype: 'int32', device: 'cpu' });
    await compare('indexSelect dim 1', [x, sel], (t, i) => t.indexSelect(1, i));
    await compare('indexSelect dim 0', [x, sel], (t, i) => t.indexSelect(0, i.narrow(0, 1, 3)));
    await compare('indexSelect 0-d', [sel], (i) =>
      lr.tensor(3, { device: i.device }).indexSelect(0, i.narrow(0, 1, 2)),
    );
    await compare('embedding', [x, idx], (t, i) => lr.embedding(t, i.abs()));
    const src = randomTensor([2, 3], 'float32', 73);
    await compare('scatterAdd dim 0', [x, idx, src], (t, i, s) => t.scatterAdd(0, i, s));
    await compare('scatterAdd dim 1 duplicates', [x, src], (t, s) =>
      t.scatterAdd(
        1,
        lr.tensor(
          [
            [1, 1, 1],
            [0, 6, 0],
          ],
          { dtype: 'int32', device: t.device },
        ),
        s,
      ),
    );
    const srcI = randomTensor([2, 3], 'int32', 74);
    await compare('scatterAdd int', [xi, idx, srcI], (t, i, s) => t.scatterAdd(0, i, s));
    const rows = randomTensor([5, 5], 'float32', 75);
    await compare('indexAdd dim 1 (duplicates)', [x, sel, rows], (t, i, s) => t.indexAdd(1, i, s));
    const rows7 = randomTensor([7, 5], 'float32', 76);
    await compare('indexAdd dim 0 from a transposed src', [x, rows7], (t, s) =>
      t.indexAdd(0, lr.tensor([1, 1, 4, 0, 3], { dtype: 'int32', device: t.device }), s.T),
    );
    rows7.dispose();
    await compare('oneHot', [sel], (i) => lr.oneHot(i.abs(), 7));
    await compare('triu/tril', [x], (t) => t.triu(1).add(t.tril(-1)));
    lr.dispose(x, xi, idx, sel, src, srcI, rows);
  });

  it('out-of-range indices are reported at the next read-back with the CPU message', async () => {
    const x = randomTensor([4, 3], 'float32', 81);
    const bad = lr.tensor([[0, 4, 1]], { dtype: 'int32', device: 'cpu' });
    await compare('gather out of range', [x, bad], (t, i) => t.gather(0, i));
    // negative indices are out of range (they do not count from the end)
    await compare('gather negative out of range', [x], (t) =>
      t.gather(1, lr.tensor([[-1]], { dtype: 'int32', device: t.device })),
    );
    await compare('indexSelect out of range', [x], (t) =>
      t.indexSelect(0, lr.tensor([1, 9], { dtype: 'int32', device: t.device })),
    );
    await compare('scatterAdd out of range', [x, bad], (t, i) => t.scatterAdd(0, i, lr.onesLike(i).float()));
    await compare('indexAdd out of range', [x], (t) =>
      t.indexAdd(
        1,
        lr.tensor([3], { dtype: 'int32', device: t.device }),
        lr.ones([4, 1], { device: t.device }),
      ),
    );
    // the report is consumed: the next read is clean
    const g = await x.to('webgpu');
    expect(await g.sum().item()).toBeCloseTo((await x.sum().item()) as number, 4);
    lr.dispose(x, bad, g);
  });
});

beforeAll(() => {
  if (skip) console.warn(`webgpu tests skipped: ${skip}`);
});
