/**
 * Sweep of the WebGPU matmul over the issue-14 shapes (bench/matmul-shapes.ts): every tile
 * configuration without split-K, then for the best three of each shape the K splits 1–8, then the
 * walk's group of tile rows for the best. Stops starting measurements after --budget seconds.
 * Prints one line per measurement and writes them as JSON to --out (the heuristic in
 * packages/tensor/src/backends/webgpu/matmul.ts is fitted to this output).
 *
 *   node --conditions=source --import tsx bench/matmul-sweep.ts [--budget=200] [--ms=20] [--out=sweep.json]
 *   on a GPU machine: bash .gpu/run.sh matmul-sweep --out=$OUT/sweep.json
 *   --set llama|llama-grouped|chunks sweeps the SmolLM2-shaped Llama's products (separate, or grouped
 *   by shared input) or GPT-2's LM-head chunks (matmul-shapes.ts); --split-min K tries K splits from depth K
 */
import { writeFileSync } from 'node:fs';
import * as lr from '@lowrank/tensor';
import { arg } from './args.js';
import { CHUNK_SHAPES, LLAMA_GROUPED_SHAPES, LLAMA_SHAPES, operands, SHAPES } from './matmul-shapes.js';
import { timeIt } from './webgpu-common.js';

const budget = Number(arg('budget', '200')) * 1000;
const minMs = Number(arg('ms', '20'));
const only = arg('shapes', '');
const outFile = arg('out', '');
const t0 = performance.now();
const r = await lr.init({ backend: 'webgpu' });
const device = lr.webgpuDevice();
console.log(`# matmul sweep — ${r.description}; ${new Date().toISOString()}`);
console.log(`# features: ${[...(device?.features ?? [])].join(', ')}`);
console.log(
  `# limits: workgroup storage ${device?.limits.maxComputeWorkgroupStorageSize}, invocations ${device?.limits.maxComputeInvocationsPerWorkgroup}`,
);

interface Row {
  shape: string;
  config: string;
  splitK: number;
  group: number;
  ms: number;
  tflops: number;
}
const rows: Row[] = [];
const sync = () => lr.getBackend('webgpu').flush?.() ?? Promise.resolve();
// the small tiles lose on every shape here (too few FMAs per shared-memory read): skipped by default
const skip = arg('skip', 't32x32x16,t64x64x16,t64x64x8r8').split(',');
const names = Object.keys(lr.MATMUL_CONFIGS).filter((n) => !skip.includes(n));
// the split-K and LM-head shapes first, so that a cut-off budget loses the square ones
const order = ['sq4096', 'dW', 'fwd', 'dX', 'sq1024', 'sq2048'];
const rank = (name: string) => order.findIndex((p) => name.replace(/^(llama|chunk)\./, '').startsWith(p));
// --set llama: the SmolLM2-shaped Llama's products instead of GPT-2's
const sets: Record<string, typeof SHAPES> = {
  gpt2: SHAPES,
  llama: LLAMA_SHAPES,
  'llama-grouped': LLAMA_GROUPED_SHAPES,
  chunks: CHUNK_SHAPES,
};
// K splits are tried on shapes at least this deep (--split-min)
const splitMin = Number(arg('split-min', '1024'));
const set = sets[arg('set', 'gpt2')] ?? SHAPES;
const shapes = (only ? set.filter((s) => only.split(',').includes(s.name)) : set)
  .slice()
  .sort((x, y) => rank(x.name) - rank(y.name));

async function measure(
  s: (typeof SHAPES)[number],
  a: lr.Tensor,
  b: lr.Tensor,
  config: string,
  splitK: number,
  group: number,
): Promise<Row | null> {
  if (performance.now() - t0 > budget) return null;
  lr.setMatmulConfig(config, { splitK, group });
  const sec = await timeIt(() => a.matmul(b).dispose(), sync, minMs);
  const row = {
    shape: s.name,
    config,
    splitK,
    group,
    ms: sec * 1e3,
    tflops: (2 * s.m * s.k * s.n) / sec / 1e12,
  };
  rows.push(row);
  console.log(
    `${s.name.padEnd(14)} ${config.padEnd(18)} split ${String(splitK).padStart(2)} group ${String(group).padStart(2)}  ${row.ms.toFixed(3).padStart(8)} ms ${row.tflops.toFixed(2).padStart(7)} TFLOP/s`,
  );
  return row;
}

if (process.argv.includes('--heuristic')) {
  // the confirmation run: the heuristic's plan on every shape, and addmm's fused bias against matmul + add
  lr.setMatmulConfig(null);
  for (const s of shapes) {
    const { a, b, dispose } = operands(lr, s);
    const sec = await timeIt(() => a.matmul(b).dispose(), sync, 50);
    let extra = '';
    if (s.name.startsWith('fwd')) {
      const bias = lr.randn([s.n], { device: 'webgpu' });
      const fused = await timeIt(() => lr.addmm(a, b, { bias }).dispose(), sync, 50);
      const unfused = await timeIt(
        () => {
          const y = a.matmul(b).add(bias);
          lr.realize(y.storage);
          y.dispose();
        },
        sync,
        50,
      );
      extra = `  addmm+bias ${(fused * 1e3).toFixed(3)} ms, matmul then add ${(unfused * 1e3).toFixed(3)} ms`;
      bias.dispose();
    }
    console.log(
      `${s.name.padEnd(14)} ${(sec * 1e3).toFixed(3).padStart(8)} ms ${((2 * s.m * s.k * s.n) / sec / 1e12).toFixed(2).padStart(7)} TFLOP/s${extra}`,
    );
    dispose();
  }
  lr.destroyWebGPU();
  process.exit(0);
}

for (const s of shapes) {
  const { a, b, dispose } = operands(lr, s);
  const phase1: Row[] = [];
  for (const name of names) {
    const row = await measure(s, a, b, name, 1, 8);
    if (row) phase1.push(row);
  }
  const best = [...phase1].sort((x, y) => x.ms - y.ms).slice(0, 3);
  const all = [...phase1];
  if (s.k >= splitMin) {
    for (const top of best) {
      for (const splitK of [2, 3, 4, 6, 8]) {
        const row = await measure(s, a, b, top.config, splitK, 8);
        if (row) all.push(row);
      }
    }
  }
  const winner = [...all].sort((x, y) => x.ms - y.ms)[0];
  if (winner) {
    for (const group of [1, 4, 16, 64]) await measure(s, a, b, winner.config, winner.splitK, group);
    console.log(
      `# best ${s.name}: ${winner.config} split ${winner.splitK} ${winner.tflops.toFixed(2)} TFLOP/s`,
    );
  }
  dispose();
}
lr.setMatmulConfig(null);
if (outFile) writeFileSync(outFile, JSON.stringify(rows, null, 1));
console.log(`# ${rows.length} measurements in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
lr.destroyWebGPU();
process.exit(0);
