import { type GradcheckOptions, gradcheck } from '@lowrank/autograd';
import type { Device, Tensor } from '@lowrank/tensor';
import * as lr from '@lowrank/tensor';
import fc from 'fast-check';
import { expect, it } from 'vitest';

/**
 * Finite-difference checks of every gradient rule over random shapes (fast-check), written once
 * and run per device. Inputs avoid the kinks of non-smooth ops (relu/abs at 0, clamp bounds,
 * max/maximum ties) by a margin larger than the finite-difference step; ties have their own
 * exact tests in rules.test.ts.
 */

interface Input {
  shape: number[];
  values: number[];
  dtype?: 'float32' | 'int32' | 'bool';
}
interface Built {
  inputs: Input[];
  f: (...xs: Tensor[]) => Tensor;
  tol?: GradcheckOptions;
}
export interface GradCase {
  /** The recorded ops this case exercises (names of OpAttrs). */
  ops: string[];
  name: string;
  arb: fc.Arbitrary<Built>;
}

// ---- value generators (deterministic from a fast-check seed)

/** Uniform [0, 1) numbers from the tensor package's seedable generator. */
function prng(seed: number): () => number {
  const gen = new lr.Generator(seed);
  return () => gen.nextFloat();
}
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Uniform values in [lo, hi], at least `gap` away from each point of `avoid`. */
function uniform(
  seed: number,
  shape: number[],
  lo: number,
  hi: number,
  avoid: number[] = [],
  gap = 0.1,
): Input {
  const r = prng(seed);
  const values = Array.from({ length: size(shape) }, () => {
    for (;;) {
      const v = lo + (hi - lo) * r();
      if (avoid.every((p) => Math.abs(v - p) >= gap)) return v;
    }
  });
  return { shape, values };
}

/** Distinct values (pairwise ≥ 0.1 apart) in random order. */
function distinct(seed: number, shape: number[]): Input {
  const r = prng(seed);
  const n = size(shape);
  const values = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.25 + r() * 0.1);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [values[i], values[j]] = [values[j], values[i]];
  }
  return { shape, values };
}

/** `input` with its values multiplied by `k`. */
function spread(input: Input, k: number): Input {
  return { ...input, values: input.values.map((v) => v * k) };
}

function ints(seed: number, shape: number[], below: number): Input {
  const r = prng(seed);
  return {
    shape,
    values: Array.from({ length: size(shape) }, () => Math.floor(r() * below)),
    dtype: 'int32',
  };
}

function bools(seed: number, shape: number[]): Input {
  const r = prng(seed);
  return { shape, values: Array.from({ length: size(shape) }, () => (r() < 0.5 ? 1 : 0)), dtype: 'bool' };
}

// ---- shape generators

const dimArb = fc.integer({ min: 1, max: 3 });
const shapeArb = (minRank = 0, maxRank = 3) => fc.array(dimArb, { minLength: minRank, maxLength: maxRank });
const seedArb = fc.integer({ min: 0, max: 2 ** 31 - 1 });

/** An output shape and an operand shape that broadcasts to it (leading dims dropped, some dims 1). */
const broadcastPair = fc
  .tuple(shapeArb(0, 3), fc.nat(3), fc.nat(3), fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }))
  .map(([out, dropA, dropB, ones]) => {
    const derive = (drop: number, flip: boolean) =>
      out.slice(Math.min(drop, out.length)).map((d, i) => (ones[i] === flip ? 1 : d));
    return { a: derive(dropA, true), b: derive(dropB, false), out };
  });

/** A shape with a list of dims to reduce (possibly empty: all dims) and keepdim. */
const reduceArb = fc
  .tuple(shapeArb(1, 3), fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), fc.boolean(), seedArb)
  .map(([shape, pick, keepdim, seed]) => {
    const dims = shape.map((_, i) => i).filter((i) => pick[i]);
    return { shape, dims: dims.length > 0 ? dims : undefined, keepdim, seed };
  });

// ---- the cases

function unaryCase(
  op: string,
  f: (x: Tensor) => Tensor,
  range: [number, number] = [-2, 2],
  avoid: number[] = [],
  gap = 0.1,
): GradCase {
  return {
    ops: [op],
    name: op,
    arb: fc.tuple(shapeArb(0, 3), seedArb).map(([shape, seed]) => ({
      inputs: [uniform(seed, shape, range[0], range[1], avoid, gap)],
      f,
    })),
  };
}

function binaryCase(
  op: string,
  f: (a: Tensor, b: Tensor) => Tensor,
  a: [number, number],
  b: [number, number],
): GradCase {
  return {
    ops: [op],
    name: `${op} (broadcasting)`,
    arb: fc.tuple(broadcastPair, seedArb).map(([s, seed]) => ({
      inputs: [uniform(seed, s.a, a[0], a[1]), uniform(seed + 1, s.b, b[0], b[1])],
      f,
    })),
  };
}

/** Signed magnitudes in [0.5, 2] (away from 0 for division). */
const signedAwayFromZero: [number, number] = [-2, 2];

export const GRAD_CASES: GradCase[] = [
  unaryCase('neg', (x) => x.neg()),
  unaryCase('abs', (x) => x.abs(), [-2, 2], [0]),
  unaryCase('exp', (x) => x.exp()),
  unaryCase('log', (x) => x.log(), [0.5, 2]),
  unaryCase('sqrt', (x) => x.sqrt(), [0.5, 2]),
  unaryCase('rsqrt', (x) => x.rsqrt(), [0.5, 2]),
  unaryCase('tanh', (x) => x.tanh()),
  unaryCase('sigmoid', (x) => x.sigmoid()),
  unaryCase('relu', (x) => x.relu(), [-2, 2], [0]),
  unaryCase('silu', (x) => x.silu()),
  unaryCase('square', (x) => x.square()),
  unaryCase('reciprocal', (x) => x.reciprocal(), [-2, 2], [0], 0.5),
  unaryCase('sin', (x) => x.sin(), [-3, 3]),
  unaryCase('cos', (x) => x.cos(), [-3, 3]),
  { ...unaryCase('gelu', (x) => x.gelu(), [-3, 3]), name: 'gelu (exact erf form)' },
  { ...unaryCase('gelu', (x) => x.gelu({ approximate: 'tanh' }), [-3, 3]), name: 'gelu (tanh form)' },
  {
    ...unaryCase('gelu', (x) => x.gelu(), [-0.002, 0.002]),
    name: 'gelu (exact form next to 0)',
  },
  {
    ops: ['clamp'],
    name: 'clamp (either bound may be null)',
    arb: fc
      .tuple(
        shapeArb(0, 3),
        seedArb,
        fc.constantFrom<[number | null, number | null]>([-0.5, 0.7], [null, 0.3], [-0.2, null]),
      )
      .map(([shape, seed, [min, max]]) => ({
        inputs: [uniform(seed, shape, -2, 2, [min ?? 9, max ?? 9])],
        f: (x: Tensor) => x.clamp(min, max),
      })),
  },
  // cast to float32 of a float32 tensor returns it unrecorded; the identity rule is reached by
  // recording that op directly (casts to int32/bool are non-differentiable: engine.test.ts)
  unaryCase('cast', (x) => lr.runOp('cast', [x], { dtype: 'float32' }, () => x.mul(1)).mul(x)),
  unaryCase('contiguous', (x) => (x.rank >= 2 ? x.transpose(0, 1).contiguous() : x.clone())),
  binaryCase('add', (a, b) => a.add(b), [-2, 2], [-2, 2]),
  binaryCase('sub', (a, b) => a.sub(b), [-2, 2], [-2, 2]),
  binaryCase('mul', (a, b) => a.mul(b), [-2, 2], [-2, 2]),
  {
    ...binaryCase('div', (a, b) => a.div(b.abs().add(0.5).mul(b.sign())), [-2, 2], signedAwayFromZero),
    ops: ['div', 'abs', 'add', 'mul'],
  },
  binaryCase('pow', (a, b) => a.pow(b), [0.5, 2], [-2, 2]),
  {
    ops: ['add', 'sub', 'mul', 'div', 'pow'],
    name: 'number operands',
    arb: fc.tuple(shapeArb(0, 3), seedArb).map(([shape, seed]) => ({
      inputs: [uniform(seed, shape, 0.5, 2)],
      f: (x: Tensor) => x.add(1).sub(0.5).mul(3).div(2).pow(2).add(x.pow(0.5)),
    })),
  },
  ...(['maximum', 'minimum'] as const).map(
    (op): GradCase => ({
      ops: [op],
      name: `${op} (broadcasting, no ties)`,
      arb: fc.tuple(broadcastPair, seedArb).map(([s, seed]) => {
        const a = uniform(seed, s.a, -2, 2);
        // b avoids every value of a by 0.1, so no pair ties within the step
        const b = uniform(seed + 1, s.b, -2, 2, a.values, 0.1);
        return {
          inputs: [a, b],
          f: (x: Tensor, y: Tensor) => (op === 'maximum' ? x.maximum(y) : x.minimum(y)),
        };
      }),
    }),
  ),
  {
    ops: ['scaledDotProductAttention'],
    name: 'scaledDotProductAttention (fused; causal or not, GQA 1 or 2, L ≠ S)',
    arb: fc
      .tuple(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 2 }),
        seedArb,
      )
      .map(([l, s, causal, g, seed]) => ({
        inputs: [
          uniform(seed, [1, 2 * g, l, 3], -1, 1),
          uniform(seed + 1, [1, 2, s, 3], -1, 1),
          uniform(seed + 2, [1, 2, s, 2], -1, 1),
        ],
        f: (q: Tensor, k: Tensor, v: Tensor) =>
          lr
            .scaledDotProductAttention(q, k, v, { causal, enableGqa: g > 1 })
            .square()
            .sum(),
      })),
  },
  {
    ops: ['where'],
    name: 'where (broadcasting)',
    arb: fc.tuple(broadcastPair, shapeArb(0, 2), seedArb).map(([s, condShape, seed]) => {
      const cond = bools(seed + 2, s.out.slice(s.out.length - Math.min(condShape.length, s.out.length)));
      return {
        inputs: [cond, uniform(seed, s.a, -2, 2), uniform(seed + 1, s.b, -2, 2)],
        f: (c: Tensor, a: Tensor, b: Tensor) => a.where(c, b),
      };
    }),
  },
  ...(['sum', 'mean', 'logsumexp'] as const).map(
    (op): GradCase => ({
      ops: [op],
      name: `${op} over random dims`,
      arb: reduceArb.map(({ shape, dims, keepdim, seed }) => ({
        inputs: [uniform(seed, shape, -2, 2)],
        f: (x: Tensor) => x[op](dims, keepdim),
      })),
    }),
  ),
  {
    ops: ['prod'],
    name: 'prod over random dims (with zeros)',
    arb: reduceArb.map(({ shape, dims, keepdim, seed }) => {
      const x = uniform(seed, shape, -1.5, 1.5);
      const r = prng(seed + 7);
      x.values = x.values.map((v) => (r() < 0.25 ? 0 : v));
      return { inputs: [x], f: (t: Tensor) => t.prod(dims, keepdim) };
    }),
  },
  ...(['max', 'min'] as const).map(
    (op): GradCase => ({
      ops: [op],
      name: `${op} over random dims (no ties)`,
      arb: reduceArb.map(({ shape, dims, keepdim, seed }) => ({
        inputs: [distinct(seed, shape)],
        f: (x: Tensor) => x[op](dims, keepdim),
      })),
    }),
  ),
  ...(['softmax', 'logSoftmax'] as const).map(
    (op): GradCase => ({
      ops: [op],
      name: op,
      arb: fc.tuple(shapeArb(1, 3), seedArb, fc.nat()).map(([shape, seed, d]) => ({
        inputs: [uniform(seed, shape, -2, 2)],
        f: (x: Tensor) => x[op]((d % shape.length) - (d % 2 === 0 ? 0 : shape.length)),
      })),
    }),
  ),
  {
    ops: ['sum', 'mean', 'sub', 'mul', 'div', 'sqrt'],
    name: 'var and std (composite)',
    arb: reduceArb.map(({ shape, dims, keepdim, seed }) => ({
      inputs: [uniform(seed, [...shape, 3], -2, 2)],
      f: (x: Tensor) =>
        x
          .var(dims, { keepdim, unbiased: false })
          .sum()
          .add(x.std(-1, { keepdim: true }).sum()),
    })),
  },
  {
    ops: ['matmul'],
    name: 'matmul (1-D, 2-D, batched with broadcasting)',
    arb: fc
      .tuple(
        fc.constantFrom('1x1', '1x2', '2x1', '2x2', 'bxb', 'bx2', '2xb', '1xb', 'bx1', 'broadcast'),
        dimArb,
        dimArb,
        dimArb,
        fc.integer({ min: 1, max: 3 }),
        seedArb,
      )
      .map(([kind, m, k, n, batch, seed]) => {
        const shapes: Record<string, [number[], number[]]> = {
          '1x1': [[k], [k]],
          '1x2': [[k], [k, n]],
          '2x1': [[m, k], [k]],
          '2x2': [
            [m, k],
            [k, n],
          ],
          bxb: [
            [batch, m, k],
            [batch, k, n],
          ],
          bx2: [
            [batch, m, k],
            [k, n],
          ],
          '2xb': [
            [m, k],
            [batch, k, n],
          ],
          '1xb': [[k], [batch, k, n]],
          bx1: [[batch, m, k], [k]],
          broadcast: [
            [batch, 1, m, k],
            [2, k, n],
          ],
        };
        const [sa, sb] = shapes[kind];
        return {
          inputs: [uniform(seed, sa, -1, 1), uniform(seed + 1, sb, -1, 1)],
          f: (a: Tensor, b: Tensor) => a.matmul(b),
        };
      }),
  },
  {
    ops: ['addmm', 'permute'],
    name: 'addmm: alpha·a@b + bias + residual (a 1-D/2-D/3-D, b transposed or not)',
    arb: fc
      .tuple(fc.constantFrom(1, 2, 3), dimArb, dimArb, dimArb, fc.boolean(), fc.boolean(), seedArb)
      .map(([rank, m, k, n, transposed, withBias, seed]) => {
        const sa = rank === 1 ? [k] : rank === 2 ? [m, k] : [2, m, k];
        const out = [...sa.slice(0, -1), n];
        return {
          inputs: [
            uniform(seed, sa, -1, 1),
            uniform(seed + 1, transposed ? [n, k] : [k, n], -1, 1),
            uniform(seed + 2, [n], -1, 1),
            uniform(seed + 3, out, -1, 1),
          ],
          f: (a: Tensor, b: Tensor, bias: Tensor, res: Tensor) =>
            lr.addmm(a, transposed ? b.T : b, { bias: withBias ? bias : null, residual: res, alpha: 0.75 }),
        };
      }),
  },
  {
    ops: ['matmul', 'permute'],
    name: 'matmul of transposed operands',
    arb: fc.tuple(dimArb, dimArb, dimArb, seedArb).map(([m, k, n, seed]) => ({
      inputs: [uniform(seed, [k, m], -1, 1), uniform(seed + 1, [n, k], -1, 1)],
      f: (a: Tensor, b: Tensor) => a.T.matmul(b.T),
    })),
  },
  {
    ops: ['loraExpand'],
    name: 'loraExpand: base + s·h·Bᵀ (B read transposed), and per-sample slices of a stack',
    arb: fc
      .tuple(dimArb, dimArb, dimArb, fc.integer({ min: 1, max: 3 }), fc.boolean(), seedArb)
      .map(([t, r, n, b, indexed, seed]) => ({
        inputs: indexed
          ? [
              uniform(seed, [b, t, n], -1, 1),
              uniform(seed + 1, [b, t, r], -1, 1),
              uniform(seed + 2, [2, r, n], -1, 1),
              ints(seed + 3, [b], 2),
            ]
          : [
              uniform(seed, [b, t, n], -1, 1),
              uniform(seed + 1, [b, t, r], -1, 1),
              uniform(seed + 2, [n, r], -1, 1),
            ],
        f: (base: Tensor, h: Tensor, w: Tensor, index?: Tensor) =>
          index
            ? lr.loraExpand(base, h, w, { scale: 0.7, index })
            : lr.loraExpand(base, h, w.T, { scale: 0.7 }),
      })),
  },
  {
    ops: ['gatherMatmul'],
    name: 'gatherMatmul (slices shared by several samples)',
    arb: fc
      .tuple(dimArb, dimArb, dimArb, fc.integer({ min: 1, max: 4 }), seedArb)
      .map(([t, k, n, b, seed]) => ({
        inputs: [
          uniform(seed, [b, t, k], -1, 1),
          uniform(seed + 1, [3, k, n], -1, 1),
          ints(seed + 2, [b], 3),
        ],
        f: (x: Tensor, w: Tensor, index: Tensor) => lr.gatherMatmul(x, w, index),
      })),
  },
  {
    ops: ['quantizedMatmul'],
    name: 'quantizedMatmul: x·dequant(W)ᵀ and x·dequant(W), nf4/int8, rows not a multiple of the block',
    arb: fc
      .tuple(dimArb, dimArb, dimArb, fc.boolean(), fc.boolean(), seedArb)
      .map(([t, k, n, nf4, transpose, seed]) => {
        const [rows, cols] = [n, k + 5];
        const r = prng(seed + 1);
        const w = Float32Array.from({ length: rows * cols }, () => r() * 2 - 1);
        const data = lr.quantizeData(w, rows, cols, {
          bits: nf4 ? 'nf4' : 'int8',
          blockSize: 4,
          doubleQuant: nf4,
        });
        return {
          inputs: [uniform(seed, [t, transpose ? cols : rows], -1, 1)],
          // the weight is freed at once: the recorded op keeps its codes and scales for backward
          f: (x: Tensor) => {
            const q = lr.QuantizedWeight.fromData(data, x.device);
            try {
              return lr.quantizedMatmul(x, q, { transpose });
            } finally {
              q.dispose();
            }
          },
        };
      }),
  },
  {
    ops: ['reshape'],
    name: 'reshape / view / flatten / squeeze / unsqueeze',
    arb: fc.tuple(shapeArb(1, 3), seedArb, fc.nat(3)).map(([shape, seed, kind]) => ({
      inputs: [uniform(seed, [...shape, 1], -2, 2)],
      f: (x: Tensor) => {
        if (kind === 0) return x.reshape([-1]).mul(x.reshape(-1));
        if (kind === 1) return x.squeeze().unsqueeze(0).flatten();
        if (kind === 2) return x.transpose(0, -1).reshape([x.size]); // reshape of a non-contiguous view copies
        return x.view(x.shape.slice().reverse()).sin();
      },
    })),
  },
  {
    ops: ['permute'],
    name: 'permute / transpose',
    arb: fc.tuple(shapeArb(1, 3), seedArb, fc.nat(5)).map(([shape, seed, p]) => {
      const dims = shape.map((_, i) => i);
      for (let i = dims.length - 1; i > 0; i--) {
        const j = (p + i) % (i + 1);
        [dims[i], dims[j]] = [dims[j], dims[i]];
      }
      return {
        inputs: [uniform(seed, shape, -2, 2)],
        f: (x: Tensor) => x.permute(dims).mul(x.permute(dims).exp()),
      };
    }),
  },
  {
    ops: ['expand'],
    name: 'expand / broadcastTo',
    arb: fc.tuple(broadcastPair, seedArb).map(([s, seed]) => ({
      inputs: [uniform(seed, s.a, -2, 2)],
      f: (x: Tensor) => x.expand(s.out).mul(x.broadcastTo(s.out)),
    })),
  },
  {
    ops: ['slice'],
    name: 'slice / narrow (steps, negative indices)',
    arb: fc
      .tuple(
        shapeArb(1, 3),
        seedArb,
        fc.nat(),
        fc.integer({ min: -4, max: 4 }),
        fc.integer({ min: -4, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
      )
      .map(([shape, seed, d, start, end, step]) => ({
        inputs: [
          uniform(
            seed,
            shape.map((n) => n + 2),
            -2,
            2,
          ),
        ],
        f: (x: Tensor) =>
          x
            .slice(d % shape.length, start, end, step)
            .mul(2)
            .add(x.narrow(0, 1, 1).sum()),
      })),
  },
  {
    ops: ['gather'],
    name: 'gather (repeated indices)',
    arb: fc.tuple(shapeArb(1, 3), seedArb, fc.nat()).map(([shape, seed, d]) => {
      const dim = d % shape.length;
      const idxShape = shape.map((n, i) => (i === dim ? n + 1 : Math.max(1, n - (seed % 2))));
      return {
        inputs: [uniform(seed, shape, -2, 2), ints(seed + 1, idxShape, shape[dim])],
        f: (x: Tensor, idx: Tensor) => x.gather(dim, idx),
      };
    }),
  },
  {
    ops: ['indexSelect'],
    name: 'indexSelect (repeated indices)',
    arb: fc
      .tuple(shapeArb(1, 3), seedArb, fc.nat(), fc.integer({ min: 1, max: 5 }))
      .map(([shape, seed, d, k]) => {
        const dim = d % shape.length;
        return {
          inputs: [uniform(seed, shape, -2, 2), ints(seed + 1, [k], shape[dim])],
          f: (x: Tensor, idx: Tensor) => x.indexSelect(dim, idx),
        };
      }),
  },
  {
    ops: ['indexSelect', 'reshape'],
    name: 'embedding',
    arb: fc.tuple(dimArb, dimArb, shapeArb(1, 2), seedArb).map(([v, d, idShape, seed]) => ({
      inputs: [uniform(seed, [v + 1, d], -2, 2), ints(seed + 1, idShape, v + 1)],
      f: (w: Tensor, ids: Tensor) => lr.embedding(w, ids),
    })),
  },
  {
    ops: ['scatterAdd'],
    name: 'scatterAdd (target and src; src larger than index)',
    arb: fc.tuple(shapeArb(1, 3), seedArb, fc.nat()).map(([shape, seed, d]) => {
      const dim = d % shape.length;
      const idxShape = shape.map((n, i) => (i === dim ? n + 1 : n));
      const srcShape = idxShape.map((n, i) =>
        i === (dim + 1) % shape.length && shape.length > 1 ? n + 1 : n,
      );
      return {
        inputs: [
          uniform(seed, shape, -2, 2),
          ints(seed + 1, idxShape, shape[dim]),
          uniform(seed + 2, srcShape, -2, 2),
        ],
        f: (t: Tensor, idx: Tensor, src: Tensor) => t.scatterAdd(dim, idx, src).square(),
      };
    }),
  },
  {
    ops: ['indexAdd'],
    name: 'indexAdd (target and src)',
    arb: fc
      .tuple(shapeArb(1, 3), seedArb, fc.nat(), fc.integer({ min: 1, max: 4 }))
      .map(([shape, seed, d, k]) => {
        const dim = d % shape.length;
        const srcShape = shape.map((n, i) => (i === dim ? k : n));
        return {
          inputs: [
            uniform(seed, shape, -2, 2),
            ints(seed + 1, [k], shape[dim]),
            uniform(seed + 2, srcShape, -2, 2),
          ],
          f: (t: Tensor, idx: Tensor, src: Tensor) => t.indexAdd(dim, idx, src).square(),
        };
      }),
  },
  {
    ops: ['cat'],
    name: 'cat / stack / split / chunk',
    arb: fc
      .tuple(shapeArb(1, 3), seedArb, fc.nat(), fc.integer({ min: 1, max: 3 }))
      .map(([shape, seed, d, extra]) => {
        const dim = d % shape.length;
        const other = shape.map((n, i) => (i === dim ? extra : n));
        return {
          inputs: [uniform(seed, shape, -2, 2), uniform(seed + 1, other, -2, 2)],
          f: (a: Tensor, b: Tensor) => {
            const c = lr.cat([a, b, a], dim);
            const parts = lr.chunk(c, 2, dim).map((p) => p.sum());
            return lr.stack([...parts, lr.split(c, 1, dim)[0].mul(2).sum()]).add(c.sin().sum());
          },
        };
      }),
  },
  binaryCase('swiglu', (a, b) => lr.swiglu(a, b), [-3, 3], [-2, 2]),
  {
    ops: ['rotateHalf'],
    name: 'rotateHalf (RoPE: x·cos + rotateHalf(x)·sin over [B, T, heads, d], of a lazy and a permuted x)',
    arb: fc
      .tuple(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        seedArb,
      )
      .map(([t, heads, half, seed]) => ({
        inputs: [
          uniform(seed, [2, heads, t, 2 * half], -2, 2),
          uniform(seed + 1, [t, 1, 2 * half], -1, 1),
          uniform(seed + 2, [t, 1, 2 * half], -1, 1),
        ],
        f: (x: Tensor, cos: Tensor, sin: Tensor) => {
          const xt = x.mul(1.5).permute(0, 2, 1, 3); // [2, t, heads, d]: a lazy chain read through a permute
          return xt.mul(cos).add(lr.rotateHalf(xt).mul(sin)).add(lr.rotateHalf(x).square().mul(0.1).sum());
        },
      })),
  },
  ...(['layerNorm', 'rmsNorm'] as const).map(
    (op): GradCase => ({
      ops: [op],
      name: `${op} (fused; over 1 or 2 trailing dims, with and without weight/bias)`,
      arb: fc
        .tuple(shapeArb(1, 3), fc.integer({ min: 1, max: 2 }), fc.nat(2), seedArb)
        .map(([shape, k, affine, seed]) => {
          const norm = shape.slice(Math.max(0, shape.length - k));
          const params = Array.from({ length: op === 'layerNorm' ? affine : Math.min(affine, 1) }, (_, i) =>
            uniform(seed + 1 + i, norm, 0.5, 1.5),
          );
          return {
            // values ≥ 1 apart, so that no row's spread is near the finite-difference step (a norm is
            // steep there); the output is centred per row, so a fixed readout makes the gradient non-trivial
            inputs: [spread(distinct(seed, shape), 4), ...params],
            f: (x: Tensor, w?: Tensor, b?: Tensor) => {
              const y =
                op === 'layerNorm'
                  ? lr.layerNorm(x, norm, w ?? null, b ?? null)
                  : lr.rmsNorm(x, norm, w ?? null);
              return y
                .mul(lr.arange(y.size, undefined, 1, { device: x.device }).reshape(y.shape).sin())
                .sum();
            },
          };
        }),
    }),
  ),
  {
    ops: ['where'],
    name: 'triu / tril (composite)',
    arb: fc.tuple(shapeArb(2, 3), seedArb, fc.integer({ min: -1, max: 1 })).map(([shape, seed, diag]) => ({
      inputs: [uniform(seed, shape, -2, 2)],
      f: (x: Tensor) => x.triu(diag).mul(3).add(x.tril(diag)),
    })),
  },
  {
    ops: ['rowCrossEntropy'],
    name: 'rowCrossEntropy (ignored labels, label smoothing, each reduction)',
    arb: fc
      .tuple(
        dimArb,
        fc.integer({ min: 1, max: 5 }),
        seedArb,
        fc.constantFrom('mean', 'sum', 'none'),
        fc.nat(3),
      )
      .map(([n, v, seed, reduction, s]) => ({
        inputs: [uniform(seed, [n, v], -2, 2), classLabels(seed + 1, n, v)],
        f: (x: Tensor, t: Tensor) => lr.rowCrossEntropy(x, t, { reduction, labelSmoothing: s * 0.1 }),
      })),
  },
  {
    ops: ['linearCrossEntropy'],
    name: 'linearCrossEntropy (chunks, bias, ignored labels, smoothing; none recomputes in backward)',
    arb: fc
      .tuple(
        fc.integer({ min: 1, max: 5 }),
        dimArb,
        fc.integer({ min: 1, max: 5 }),
        seedArb,
        fc.constantFrom('mean', 'sum', 'none'),
        fc.boolean(),
        fc.integer({ min: 1, max: 5 }),
      )
      .map(([n, c, v, seed, reduction, withBias, chunkSize]) => ({
        inputs: [
          uniform(seed, [n, c], -1, 1),
          uniform(seed + 1, [v, c], -1, 1),
          classLabels(seed + 2, n, v),
          ...(withBias ? [uniform(seed + 3, [v], -1, 1)] : []),
        ],
        f: (h: Tensor, w: Tensor, t: Tensor, b?: Tensor) =>
          lr.linearCrossEntropy(h, w, t, { bias: b, reduction, chunkSize, labelSmoothing: 0.1 }),
      })),
  },
];

/** Class indices below `v`, about one in four ignored (−100) but never the first (a 'mean' of none is NaN). */
function classLabels(seed: number, n: number, v: number): Input {
  const r = prng(seed);
  const values = Array.from({ length: n }, (_, i) => (i > 0 && r() < 0.25 ? -100 : Math.floor(r() * v)));
  return { shape: [n], values, dtype: 'int32' };
}

function build(device: Device, input: Input): Tensor {
  const dtype = input.dtype ?? 'float32';
  const typed =
    dtype === 'float32'
      ? Float32Array.from(input.values)
      : dtype === 'int32'
        ? Int32Array.from(input.values)
        : Uint8Array.from(input.values);
  return lr.fromTypedArray(typed, input.shape, { device, dtype });
}

/** Registers one test per case: fast-check properties of gradcheck on `device`. */
export function gradSuite(
  device: Device,
  options: { numRuns: number; cases?: GradCase[]; timeoutMs?: number },
): void {
  for (const c of options.cases ?? GRAD_CASES) {
    it(
      `${c.name} [${c.ops.join(', ')}] on ${device}`,
      async () => {
        const before = lr.memory().numTensors;
        await fc.assert(
          fc.asyncProperty(c.arb, async ({ inputs, f, tol }) => {
            const xs = inputs.map((i) => build(device, i));
            try {
              const result = await gradcheck(f, xs, tol);
              const shapes = inputs.map((i) => `[${i.shape.join(',')}]`).join(' ');
              expect(result.mismatches.slice(0, 3), `inputs ${shapes}`).toEqual([]);
            } finally {
              for (const x of xs) x.dispose();
            }
          }),
          { numRuns: options.numRuns, seed: 42 },
        );
        expect(lr.memory().numTensors).toBe(before);
      },
      options.timeoutMs,
    );
  }
}
