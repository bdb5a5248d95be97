/**
 * Elementwise engine on the GPU (issue 13): effective GB/s of `add` (two contiguous float32 tensors
 * of 2^24 elements) and of a row softmax ([4096, 4096] float32, last dim), lowrank's WebGPU backend
 * beside @tensorflow/tfjs-backend-webgpu 4.22 on the same Dawn device in the same process.
 * Bytes are what the op must move at least: add reads two tensors and writes one (3·n·4), softmax
 * reads and writes one (2·n·4). Time per call is the best of 3 batches of back-to-back calls ended
 * by a GPU sync (bench/webgpu-common.ts). Prints a table, then one JSON line.
 *
 *   XDG_RUNTIME_DIR=/tmp pnpm bench bench/elementwise-gpu.ts --quick      (lavapipe: small sizes)
 *   pnpm bench bench/elementwise-gpu.ts [--n 16777216] [--rows 4096 --cols 4096] [--ms 300]
 *   on a GPU machine: bash bench/bundle.sh .gpu bench/elementwise-gpu.ts (next to a kit made by
 *   ../shared/gpu/pack.sh; bundle.sh needs esbuild on the PATH, e.g.
 *   PATH=$PWD/node_modules/.pnpm/node_modules/.bin:$PATH), then bash .gpu/run.sh elementwise-gpu
 *
 * Lazy fusion means `a.add(b)` alone computes nothing: each lowrank call realizes its result
 * (`lr.realize`), as a consumer would, so the kernel really runs. `--fusion 0` measures the
 * one-kernel-per-op path instead.
 */
import { arg, fmt, lr, setup, syncLowrank, syncTf, tf, timeIt } from './webgpu-common.js';

const QUICK = process.argv.includes('--quick');
const n = Number(arg('n', String(QUICK ? 1 << 16 : 1 << 24)));
const rows = Number(arg('rows', QUICK ? '64' : '4096'));
const cols = Number(arg('cols', QUICK ? '256' : '4096'));
const minMs = Number(arg('ms', QUICK ? '50' : '300'));
const fusion = arg('fusion', '1') !== '0';

const s = await setup();
lr.setFusion(fusion);
console.log(
  `# elementwise-gpu f32 — ${s.description}; fusion ${fusion ? 'on' : 'off'}; ${new Date().toISOString()}`,
);

/** The largest |lowrank − tfjs| over the values of one call (a check that both computed the op). */
async function maxDiff(ours: lr.Tensor, theirs: tf.Tensor): Promise<number> {
  const a = await ours.data();
  const b = await theirs.data();
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

interface Row {
  op: string;
  shape: number[];
  bytes: number;
  lowrankGBs: number;
  tfjsGBs: number;
  ratio: number;
  lowrankDispatches: number;
  maxAbsDiff: number;
}

async function bench(
  op: string,
  shape: number[],
  bytes: number,
  ours: () => lr.Tensor,
  theirs: () => tf.Tensor,
): Promise<Row> {
  // one call each, compared, and lowrank's dispatches per call counted
  await syncLowrank();
  const d0 = lr.webgpuStats()?.dispatches ?? 0;
  const mine = ours();
  lr.realize(mine.storage);
  const lowrankDispatches = (lr.webgpuStats()?.dispatches ?? 0) - d0;
  const ref = theirs();
  const maxAbsDiff = await maxDiff(mine, ref);
  mine.dispose();
  ref.dispose();

  const t1 = await timeIt(
    () => {
      const y = lr.tidy(ours);
      lr.realize(y.storage);
      y.dispose();
    },
    syncLowrank,
    minMs,
  );
  const t2 = await timeIt(
    () => tf.tidy(theirs).dispose(),
    () => syncTf(s),
    minMs,
  );
  return {
    op,
    shape,
    bytes,
    lowrankGBs: bytes / t1 / 1e9,
    tfjsGBs: bytes / t2 / 1e9,
    ratio: t2 / t1,
    lowrankDispatches,
    maxAbsDiff,
  };
}

const a = lr.randn([n], { device: 'webgpu' });
const b = lr.randn([n], { device: 'webgpu' });
const x = lr.randn([rows, cols], { device: 'webgpu' });
const ta = tf.tensor1d((await a.data()) as Float32Array);
const tb = tf.tensor1d((await b.data()) as Float32Array);
const tx = tf.tensor2d((await x.data()) as Float32Array, [rows, cols]);

const results: Row[] = [
  await bench(
    'add',
    [n],
    3 * n * 4,
    () => a.add(b),
    () => tf.add(ta, tb),
  ),
  await bench(
    'softmax',
    [rows, cols],
    2 * rows * cols * 4,
    () => x.softmax(-1),
    () => tf.softmax(tx),
  ),
];

console.log('\nop        shape           lowrank GB/s   tfjs GB/s   lowrank/tfjs   dispatches   max |Δ|');
for (const r of results)
  console.log(
    `${r.op.padEnd(9)} ${JSON.stringify(r.shape).padEnd(14)} ${fmt(r.lowrankGBs, 1)}      ${fmt(r.tfjsGBs, 1)}    ${fmt(r.ratio)}       ${String(r.lowrankDispatches).padStart(5)}   ${r.maxAbsDiff.toExponential(1)}`,
  );
console.log(
  JSON.stringify({
    bench: 'elementwise-gpu',
    device: s.description,
    fusion,
    quick: QUICK,
    time: new Date().toISOString(),
    results,
  }),
);
lr.dispose(a, b, x);
tf.dispose([ta, tb, tx]);
lr.destroyWebGPU();
process.exit(0);
