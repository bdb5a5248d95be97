import { afterEach, describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { initWebGPU, rng } from './helpers.js';

/**
 * The skinny matmul kernels (webgpu/matmul-skinny.ts) and the loraMatmul kernel behind
 * loraExpand/gatherMatmul against float64 loops: odd sizes around the 64-row tiles and the
 * N ≤ 64 / M ≤ 64 / K ≤ 64 cases, operands read transposed through their strides, split-K
 * forced off and on (and the heuristic), residuals read through strides, gathered weights.
 */
const skip = await initWebGPU();

interface Mat {
  t: lr.Tensor;
  v: Float64Array;
  transposed: boolean;
}

/** A [rows, cols] CPU matrix of uniform values; `transposed` stores it [cols, rows] and returns `.T`. */
function matrix(rows: number, cols: number, seed: number, transposed: boolean): Mat {
  const r = rng(seed);
  const v = new Float64Array(rows * cols);
  for (let i = 0; i < v.length; i++) v[i] = Math.fround(r() * 2 - 1);
  if (!transposed)
    return { t: lr.fromTypedArray(new Float32Array(v), [rows, cols], { device: 'cpu' }), v, transposed };
  const s = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) s[j * rows + i] = v[i * cols + j];
  return { t: lr.fromTypedArray(s, [cols, rows], { device: 'cpu' }).T, v, transposed };
}

/** The matrix on WebGPU with the same strides (\`to\` of a transposed view would copy it contiguous). */
async function onGpu(mat: Mat): Promise<lr.Tensor> {
  return mat.transposed ? (await mat.t.T.to('webgpu')).T : mat.t.to('webgpu');
}

function naive(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) out[i * n + j] += a[i * k + p] * b[p * n + j];
  return out;
}

function maxErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]));
  return e;
}

async function gpuDispatches(fn: () => Promise<void>): Promise<number> {
  await lr.getBackend('webgpu').flush?.();
  const before = lr.webgpuStats()!.dispatches;
  await fn();
  return lr.webgpuStats()!.dispatches - before;
}

// [m, k, n]: skinny output (n ≤ 64), skinny rows (m ≤ 64), tiny inner dim (k ≤ 64), tile edges
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [300, 200, 4],
  [65, 129, 64],
  [64, 7, 63],
  [129, 200, 17],
  [2, 3, 5],
  [37, 150, 1],
  [5, 131, 190],
  [64, 96, 100],
  [1, 200, 65],
  [130, 3, 300],
  [200, 64, 71],
  [77, 1, 66],
];

describe.skipIf(skip !== null)(`skinny matmuls on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  afterEach(() => lr.setSkinnyMatmul({ enabled: true, split: null, rowdot: true }));

  it('match float64 loops over odd shapes, transposed operands, split-K off/on/heuristic, row kernel on/off', async () => {
    let seed = 1;
    for (const [m, k, n] of SHAPES) {
      for (const [split, rowdot] of [
        [1, true],
        [3, true],
        [null, true],
        [null, false],
      ] as const) {
        const ta = seed % 2 === 0;
        const tb = seed % 3 === 0;
        const a = matrix(m, k, seed++, ta);
        const b = matrix(k, n, seed++, tb);
        lr.setSkinnyMatmul({ split, rowdot });
        const [ag, bg] = [await onGpu(a), await onGpu(b)];
        const y = ag.matmul(bg);
        const err = maxErr(await y.data(), naive(a.v, b.v, m, k, n));
        expect(
          err,
          `[${m},${k}]${ta ? 'ᵀ' : ''} @ [${k},${n}]${tb ? 'ᵀ' : ''} split ${split}${rowdot ? '' : ' tiles'}`,
        ).toBeLessThan(1e-5 * Math.sqrt(k) + 1e-6);
        lr.dispose(a.t, b.t, ag, bg, y);
      }
    }
  });

  it('takes split-K as one partial pass plus one ordered reduction, and is deterministic', async () => {
    const a = matrix(40, 600, 7, true); // dAᵀ-like: [in, tokens] read transposed
    const b = matrix(600, 8, 8, false);
    const [ag, bg] = [await onGpu(a), await onGpu(b)];
    lr.setSkinnyMatmul({ split: 4 });
    let first: Float32Array | null = null;
    const n = await gpuDispatches(async () => {
      const y = ag.matmul(bg);
      first = (await y.data()) as Float32Array;
      y.dispose();
    });
    expect(n).toBe(2);
    const again = ag.matmul(bg);
    expect(Array.from((await again.data()) as Float32Array)).toEqual(Array.from(first!));
    lr.setSkinnyMatmul({ split: 1 });
    expect(await gpuDispatches(async () => void (await ag.matmul(bg).data()))).toBe(1);
    expect(maxErr(first!, naive(a.v, b.v, 40, 600, 8))).toBeLessThan(1e-4);
    lr.dispose(a.t, b.t, ag, bg, again);
  });

  it('batched matmuls with a skinny side (attention-like [b, t, 64] shapes) still match', async () => {
    const r = rng(3);
    const av = Float32Array.from({ length: 3 * 70 * 64 }, () => r() - 0.5);
    const bv = Float32Array.from({ length: 3 * 64 * 70 }, () => r() - 0.5);
    const a = lr.fromTypedArray(av, [3, 70, 64], { device: 'cpu' });
    const b = lr.fromTypedArray(bv, [3, 64, 70], { device: 'cpu' });
    const want = await a.matmul(b).data();
    const [ag, bg] = [await a.to('webgpu'), await b.to('webgpu')];
    const got = await ag.matmul(bg).data();
    expect(maxErr(got, want)).toBeLessThan(1e-5);
    const got2 = await bg.matmul(ag).data(); // [3, 64, 64], k = 70
    expect(maxErr(got2, await b.matmul(a).data())).toBeLessThan(1e-5);
  });
});

describe.skipIf(skip !== null)(
  `loraExpand / gatherMatmul on webgpu${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    afterEach(() => lr.setSkinnyMatmul({ split: null, rowdot: true }));

    it('loraExpand = base + s·h·Bᵀ, base read through strides, split off/on', async () => {
      let seed = 100;
      for (const [m, r, n] of [
        [1, 1, 1],
        [130, 4, 300],
        [67, 64, 65],
        [200, 16, 3],
        [9, 33, 70],
      ] as const) {
        for (const split of [1, 2]) {
          const base = matrix(m, n, seed++, true); // a transposed (strided) base output
          const h = matrix(m, r, seed++, false);
          const B = matrix(n, r, seed++, false); // PEFT's B [N, r]
          lr.setSkinnyMatmul({ split });
          const g = await Promise.all([base, h, B].map(onGpu));
          const y = lr.loraExpand(g[0], g[1], g[2].T, { scale: 0.25 });
          const Bt = new Float64Array(r * n);
          for (let i = 0; i < n; i++) for (let j = 0; j < r; j++) Bt[j * n + i] = B.v[i * r + j];
          const prod = naive(h.v, Bt, m, r, n);
          const want = prod.map((p, i) => base.v[i] + 0.25 * p);
          expect(maxErr(await y.data(), want), `[${m}, ${r}, ${n}] split ${split}`).toBeLessThan(1e-5);
          lr.dispose(base.t, h.t, B.t, g, y);
        }
      }
    });

    it('gathered weights: each sample uses w[index[b]], both orientations', async () => {
      let seed = 200;
      // [t, k, n]: n ≤ 64 gathers B; n > 64 with t ≤ 64 runs transposed and gathers A; k ≤ 64 square tiles
      for (const [t, k, n] of [
        [5, 40, 8],
        [3, 20, 90],
        [70, 8, 80],
      ] as const) {
        const b = 4;
        const slots = 3;
        const index = [2, 0, 1, 2];
        const xs = Array.from({ length: b }, () => matrix(t, k, seed++, false));
        const ws = Array.from({ length: slots }, () => matrix(k, n, seed++, false));
        const base = Array.from({ length: b }, () => matrix(t, n, seed++, false));
        const x = lr.stack(xs.map((e) => e.t));
        const w = lr.stack(ws.map((e) => e.t));
        const y0 = lr.stack(base.map((e) => e.t));
        const ix = lr.tensor(index, { dtype: 'int32' });
        const g = await Promise.all([x, w, y0, ix].map((e) => e.to('webgpu')));
        const got = await lr.gatherMatmul(g[0], g[1], g[3]).data();
        const got2 = await lr.loraExpand(g[2], g[0], g[1], { index: g[3], scale: 2 }).data();
        const want: number[] = [];
        const want2: number[] = [];
        for (let i = 0; i < b; i++) {
          const p = naive(xs[i].v, ws[index[i]].v, t, k, n);
          want.push(...p);
          want2.push(...p.map((v, j) => base[i].v[j] + 2 * v));
        }
        expect(maxErr(got, want), `[${t}, ${k}, ${n}]`).toBeLessThan(1e-5);
        expect(maxErr(got2, want2), `[${t}, ${k}, ${n}] expand`).toBeLessThan(1e-5);
        lr.dispose(
          xs.map((e) => e.t),
          ws.map((e) => e.t),
          base.map((e) => e.t),
          x,
          w,
          y0,
          ix,
          g,
        );
      }
    });

    it('reports an out-of-range index at the next read, naming the kernel (negatives too)', async () => {
      const x = lr.zeros([2, 3, 4], { device: 'webgpu' });
      const w = lr.zeros([2, 4, 5], { device: 'webgpu' });
      for (const bad of [2, -1]) {
        const ix = lr.tensor([0, bad], { dtype: 'int32', device: 'webgpu' });
        await expect(lr.gatherMatmul(x, w, ix).data()).rejects.toThrow(
          new RegExp(`loraMatmul: index ${bad} is out of bounds for a dimension of size 2`),
        );
        ix.dispose();
      }
      lr.dispose(x, w);
    });
  },
);
