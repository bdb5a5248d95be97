/**
 * LoRA kernels at GPT-2 size (issue 14, item 5): GPU time of the base matmul of c_attn
 * (M = 4096 tokens, K = 768, N = 2304) beside the LoRA path's shapes — shrink x·Aᵀ, the fused
 * expand y + s·h·Bᵀ, and the backward products dh = dY·B, dBᵀ = hᵀ·dY, dAᵀ = xᵀ·dh, dx = dh·A —
 * for r = 4, 16, 64, each with the skinny kernels and with the general matmul (skinny off, expand
 * unfused), plus a split-K sweep of the K = 4096 reductions and a mixed-adapter batch.
 * Times are GPU kernel time per call (timestamped dispatches, summed over the call's kernels).
 *
 *   XDG_RUNTIME_DIR=/tmp node --conditions=source --import tsx bench/lora-kernels.ts --m=256
 *   on a GPU machine: bash .gpu/run.sh lora-kernels
 */
import * as lr from '@lowrank/tensor';
import { arg } from './args.js';

const M = Number(arg('m', '4096'));
const K = Number(arg('k', '768'));
const N = Number(arg('n', '2304'));
const ranks = arg('r', '4,16,64').split(',').map(Number);
const reps = Number(arg('reps', '10'));
const sweep = !process.argv.includes('--no-sweep');

const info = await lr.init({ backend: 'webgpu' });
lr.setDefaultDevice('webgpu');
const prof = lr.webgpuProfiler()!;
console.log(`# lora-kernels — ${info.description}; ${new Date().toISOString()}`);
console.log(`# M=${M} K=${K} N=${N}; GPU µs per call (mean of ${reps}, after 2 warm-up calls)`);

/** GPU µs per call of `fn` (its tensors disposed), and the kernels it ran. */
async function gpu(fn: () => lr.Tensor): Promise<{ us: number; kernels: string }> {
  for (let i = 0; i < 2; i++) await fn().data();
  await lr.getBackend('webgpu').flush?.();
  prof.profileKernels(true);
  await prof.readKernelProfile(); // clears
  for (let i = 0; i < reps; i++) {
    // with lazy fusion an unread result computes nothing: realize it, as a consumer would
    const t = fn();
    lr.realize(t.storage);
    t.dispose();
  }
  const profile = await prof.readKernelProfile();
  prof.profileKernels(false);
  let ns = 0;
  const names: string[] = [];
  for (const [key, v] of profile) {
    ns += v.ns;
    names.push(`${key.split('|').slice(0, 2).join('|')}×${v.count / reps}`);
  }
  return { us: ns / reps / 1e3, kernels: names.join(' ') };
}

const row = (name: string, us: number, base: number, extra = '') =>
  console.log(
    `${name.padEnd(34)} ${us.toFixed(1).padStart(9)} µs ${(us / base).toFixed(4).padStart(8)}× base  ${extra}`,
  );

const x = lr.randn([M, K]);
const W = lr.randn([N, K]).mul(0.02); // nn.Linear layout [out, in]
const dY = lr.randn([M, N]);
const y = x.matmul(W.T);
const baseFwd = (await gpu(() => x.matmul(W.T))).us;
const baseDx = (await gpu(() => dY.matmul(W))).us;
const baseDw = (await gpu(() => dY.T.matmul(x))).us;
const base = baseFwd + baseDx + baseDw;
console.log(
  `\nbase forward x·Wᵀ ${baseFwd.toFixed(1)} µs, dX = dY·W ${baseDx.toFixed(1)} µs, dW = dYᵀ·x ${baseDw.toFixed(1)} µs`,
);
console.log('ratios are against the base forward (forward rows) or the base fwd+bwd total (totals)');

for (const r of ranks) {
  const A = lr.randn([r, K]).mul(0.05);
  const B = lr.randn([N, r]).mul(0.05);
  const h = x.matmul(A.T);
  const dh = dY.matmul(B);
  const s = 2 / r;
  const cases: [string, () => lr.Tensor, () => lr.Tensor][] = [
    ['shrink h = x·Aᵀ', () => x.matmul(A.T), () => x.matmul(A.T)],
    ['expand y + s·h·Bᵀ', () => lr.loraExpand(y, h, B.T, { scale: s }), () => y.add(h.matmul(B.T).mul(s))],
    ['dh = dY·B', () => dY.matmul(B), () => dY.matmul(B)],
    ['dBᵀ = hᵀ·dY', () => h.T.matmul(dY), () => h.T.matmul(dY)],
    ['dAᵀ = xᵀ·dh', () => x.T.matmul(dh), () => x.T.matmul(dh)],
    ['dx += dh·A', () => dh.matmul(A), () => dh.matmul(A)],
  ];
  console.log(`\n## r = ${r} (r/K = ${(r / K).toFixed(4)})`);
  console.log(
    `${'case'.padEnd(34)} ${'skinny'.padStart(12)} ${'vs base'.padStart(14)}   general   kernels (skinny)`,
  );
  let tot = 0;
  let totGeneral = 0;
  for (const [name, fast, slow] of cases) {
    const f = await gpu(fast);
    lr.setSkinnyMatmul({ enabled: false });
    const g = await gpu(slow);
    lr.setSkinnyMatmul({ enabled: true });
    tot += f.us;
    totGeneral += g.us;
    row(name, f.us, baseFwd, `${g.us.toFixed(1).padStart(8)} µs  ${f.kernels}`);
  }
  row('LoRA fwd+bwd total (skinny)', tot, base);
  row('LoRA fwd+bwd total (general)', totGeneral, base);
  if (sweep) {
    for (const [name, fn] of [
      ['dAᵀ = xᵀ·dh', () => x.T.matmul(dh)],
      ['dBᵀ = hᵀ·dY', () => h.T.matmul(dY)],
      ['dh = dY·B', () => dY.matmul(B)],
      ['shrink', () => x.matmul(A.T)],
    ] as const) {
      const cells: string[] = [];
      for (const split of [1, 2, 4, 8, 16, 32]) {
        lr.setSkinnyMatmul({ split });
        cells.push(`S=${split}: ${(await gpu(fn)).us.toFixed(1)}`);
      }
      lr.setSkinnyMatmul({ split: null });
      cells.push(`auto: ${(await gpu(fn)).us.toFixed(1)}`);
      for (const bk of [32, 64]) {
        lr.setSkinnyMatmul({ bk });
        cells.push(`bk=${bk}: ${(await gpu(fn)).us.toFixed(1)}`);
      }
      lr.setSkinnyMatmul({ bk: null, rowdot: false });
      cells.push(`tiles: ${(await gpu(fn)).us.toFixed(1)}`);
      lr.setSkinnyMatmul({ rowdot: true });
      console.log(`  split sweep ${name.padEnd(14)} ${cells.join('  ')}`);
    }
  }
  lr.dispose(A, B, h, dh);
}

// mixed-adapter batch: b samples × t tokens, each sample its own adapter of a stack of 16
{
  const [b, t, d, r, slots] = [32, 64, 1024, 8, 16];
  const xm = lr.randn([b, t, d]);
  const AT = lr.randn([slots, d, r]).mul(0.05);
  const BT = lr.randn([slots, r, d]).mul(0.05);
  const ym = lr.randn([b, t, d]);
  const index = lr.tensor(
    Array.from({ length: b }, (_, i) => i % slots),
    { dtype: 'int32' },
  );
  const gathered = await gpu(() => lr.loraExpand(ym, lr.gatherMatmul(xm, AT, index), BT, { index }));
  const copies = await gpu(() =>
    ym.add(xm.matmul(AT.indexSelect(0, index)).matmul(BT.indexSelect(0, index))),
  );
  const single = await gpu(() => xm.reshape([b * t, d]).matmul(AT.narrow(0, 0, 1).reshape([d, r])));
  console.log(`\n## mixed batch b=${b} t=${t} d=${d} r=${r}, ${slots} adapters`);
  console.log(`gathered in-kernel (BGMV)      ${gathered.us.toFixed(1)} µs  ${gathered.kernels}`);
  console.log(`indexSelect copies + matmuls   ${copies.us.toFixed(1)} µs  ${copies.kernels}`);
  console.log(`(one adapter's shrink alone    ${single.us.toFixed(1)} µs)`);
}
lr.destroyWebGPU();
