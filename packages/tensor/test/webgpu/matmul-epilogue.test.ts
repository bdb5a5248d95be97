import { afterAll, describe, expect, it } from 'vitest';
import * as lr from '../../src/index.js';
import { refAddmm, relErr } from '../addmm-reference.js';
import { initWebGPU } from './helpers.js';

/**
 * The WebGPU matmul's split-K, tile walk and fused epilogue against float64 loops: odd sizes, every
 * operand layout (plain, transposed views, a strided slice that forces scalar loads along either
 * dim), split-K off and on, with and without bias/residual/alpha. Small shapes: lavapipe compiles
 * each variant slowly.
 */
const skip = await initWebGPU();
afterAll(() => lr.destroyWebGPU());

type Make = (t: lr.Tensor) => Promise<lr.Tensor>;
const plain: Make = async (t) => t.to('webgpu');
const transposed: Make = async (t) => (await t.T.contiguous().to('webgpu')).T;
// every other column of a [r, 2c] tensor: row stride 2c, column stride 2 (no vec4 loads)
const strided: Make = async (t) => {
  const wide = lr
    .cat([t, t.mul(7)], 1)
    .reshape([t.shape[0], 2, t.shape[1]])
    .transpose(1, 2)
    .reshape([t.shape[0], 2 * t.shape[1]]);
  return (await wide.to('webgpu')).slice(1, 0, 2 * t.shape[1], 2);
};
const LAYOUTS: [string, Make][] = [
  ['plain', plain],
  ['transposed', transposed],
  ['strided', strided],
];

describe.skipIf(skip !== null)(
  `matmul split-K and epilogue on webgpu${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('every layout of A and B, split-K on and off, against float64 loops', async () => {
      for (const [m, k, n] of [
        [37, 53, 29],
        [64, 96, 64],
        [9, 1100, 12],
      ]) {
        const a = lr.randn([m, k]);
        const b = lr.randn([k, n]);
        const ref = refAddmm(await a.data(), await b.data(), m, k, n, null, null, 1);
        for (const [la, fa] of LAYOUTS) {
          for (const [lb, fb] of LAYOUTS) {
            const ag = await fa(a);
            const bg = await fb(b);
            for (const splitK of [1, 3]) {
              lr.setMatmulConfig('t32x32x16', { splitK, group: 2 });
              const y = ag.matmul(bg);
              expect(relErr(await y.data(), ref), `${m}×${k}×${n} ${la}·${lb} split ${splitK}`).toBeLessThan(
                1e-4,
              );
              y.dispose();
            }
            lr.dispose(ag, bg);
          }
        }
        lr.dispose(a, b);
      }
      lr.setMatmulConfig(null);
    }, 600_000);

    it('the heuristic and a vec4 config, aligned and not, with split-K forced', async () => {
      for (const [m, k, n] of [
        [128, 256, 128],
        [70, 300, 44],
      ]) {
        const a = lr.randn([m, k]);
        const b = lr.randn([k, n]);
        const ref = refAddmm(await a.data(), await b.data(), m, k, n, null, null, 1);
        const ag = await a.to('webgpu');
        const bg = await transposed(b);
        for (const [cfg, splitK] of [
          [null, undefined],
          ['t64x64x16', 1],
          ['t64x64x16', 4],
        ] as [string | null, number | undefined][]) {
          lr.setMatmulConfig(cfg, splitK ? { splitK } : {});
          const y = ag.matmul(bg);
          expect(relErr(await y.data(), ref), `${m}×${k}×${n} ${cfg} split ${splitK}`).toBeLessThan(1e-4);
          y.dispose();
        }
        lr.dispose(a, b, ag, bg);
      }
      lr.setMatmulConfig(null);
    }, 600_000);

    it('addmm: bias, residual and alpha fused, split-K on and off, odd N (scalar stores)', async () => {
      for (const [sa, n] of [
        [[2, 5, 19], 13],
        [[33, 40], 24],
      ] as [number[], number][]) {
        const k = sa[sa.length - 1];
        const rows = sa.slice(0, -1).reduce((x, y) => x * y, 1);
        const a = lr.randn(sa);
        const w = lr.randn([n, k]);
        const bias = lr.randn([n]);
        const res = lr.randn([...sa.slice(0, -1), n]);
        const [ag, wg, biasg, resg] = await Promise.all([a, w, bias, res].map((t) => t.to('webgpu')));
        const wt = await w.T.contiguous().data();
        for (const splitK of [1, 2]) {
          lr.setMatmulConfig('t32x32x16', { splitK });
          for (const [useBias, useRes, alpha] of [
            [true, true, 0.5],
            [true, false, 1],
            [false, true, -2],
          ] as [boolean, boolean, number][]) {
            const y = lr.addmm(ag, wg.T, {
              bias: useBias ? biasg : null,
              residual: useRes ? resg : null,
              alpha,
            });
            const ref = refAddmm(
              await a.data(),
              wt,
              rows,
              k,
              n,
              useBias ? await bias.data() : null,
              useRes ? await res.data() : null,
              alpha,
            );
            expect(
              relErr(await y.data(), ref),
              `[${sa}] n=${n} split ${splitK} ${useBias} ${useRes}`,
            ).toBeLessThan(1e-4);
            y.dispose();
          }
        }
        lr.dispose(a, w, bias, res, ag, wg, biasg, resg);
      }
      lr.setMatmulConfig(null);
    }, 600_000);
  },
);
