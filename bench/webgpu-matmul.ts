/**
 * WebGPU matmul benchmark: lowrank's tiled WGSL matmul beside @tensorflow/tfjs-backend-webgpu 4.22
 * on the same Dawn device, f32, square sizes 256–4096 (TFLOP/s and the ratio lowrank / tfjs),
 * transposed operands (read through strides, no copies), a batched case, and (with --sweep) every
 * tile configuration so the heuristic can be checked.
 *
 *   node --conditions=source --import tsx bench/webgpu-matmul.ts [--sizes=256,1024] [--sweep] [--ms=300]
 *   on a GPU machine: bash .gpu/run.sh webgpu-matmul --sweep
 */
import { arg, fmt, lr, setup, syncLowrank, syncTf, tf, timeIt } from './webgpu-common.js';

const s = await setup();
const sizes = arg('sizes', '256,512,1024,2048,4096').split(',').map(Number);
const minMs = Number(arg('ms', '300'));
const sweep = process.argv.includes('--sweep');
console.log(`# webgpu matmul f32 — ${s.description}; ${new Date().toISOString()}`);
console.log(`# node ${process.version}; tfjs-backend-webgpu 4.22.0`);

function lowrankTime(
  a: lr.Tensor,
  b: lr.Tensor,
  f: (x: lr.Tensor, y: lr.Tensor) => lr.Tensor,
): Promise<number> {
  return timeIt(() => f(a, b).dispose(), syncLowrank, minMs);
}

console.log('\ncase                       lowrank TFLOP/s   tfjs TFLOP/s   ratio');
for (const n of sizes) {
  const flops = 2 * n * n * n;
  const a = lr.randn([n, n], { device: 'webgpu' });
  const b = lr.randn([n, n], { device: 'webgpu' });
  const ours = await lowrankTime(a, b, (x, y) => x.matmul(y));
  const ta = tf.randomNormal([n, n]);
  const tb = tf.randomNormal([n, n]);
  const theirs = await timeIt(
    () => tf.matMul(ta, tb).dispose(),
    () => syncTf(s),
    minMs,
  );
  console.log(
    `${`${n}³`.padEnd(26)} ${fmt(flops / ours / 1e12)}        ${fmt(flops / theirs / 1e12)}     ${fmt(theirs / ours)}`,
  );
  if (n >= 1024) {
    const tt = await lowrankTime(a, b, (x, y) => x.T.matmul(y.T));
    const ttf = await timeIt(
      () => tf.matMul(ta, tb, true, true).dispose(),
      () => syncTf(s),
      minMs,
    );
    console.log(
      `${`${n}³ Aᵀ·Bᵀ`.padEnd(26)} ${fmt(flops / tt / 1e12)}        ${fmt(flops / ttf / 1e12)}     ${fmt(ttf / tt)}`,
    );
    const nt = await lowrankTime(a, b, (x, y) => x.matmul(y.T));
    const ntf = await timeIt(
      () => tf.matMul(ta, tb, false, true).dispose(),
      () => syncTf(s),
      minMs,
    );
    console.log(
      `${`${n}³ A·Bᵀ`.padEnd(26)} ${fmt(flops / nt / 1e12)}        ${fmt(flops / ntf / 1e12)}     ${fmt(ntf / nt)}`,
    );
  }
  if (sweep) {
    for (const name of Object.keys(lr.MATMUL_CONFIGS)) {
      lr.setMatmulConfig(name);
      const t = await lowrankTime(a, b, (x, y) => x.matmul(y));
      console.log(`  ${n}³ ${name.padEnd(18)} ${fmt(flops / t / 1e12)}`);
    }
    lr.setMatmulConfig(null);
  }
  lr.dispose(a, b);
  tf.dispose([ta, tb]);
}

// batched, GPT-2-like attention scores and projection shapes
const shapes: [number[], number[]][] = [
  [
    [12, 1024, 64],
    [12, 64, 1024],
  ],
  [
    [8192, 768],
    [768, 3072],
  ],
];
for (const [sa, sb] of shapes) {
  const a = lr.randn(sa, { device: 'webgpu' });
  const b = lr.randn(sb, { device: 'webgpu' });
  const batch = sa.length === 3 ? sa[0] : 1;
  const flops = 2 * batch * sa[sa.length - 2] * sa[sa.length - 1] * sb[sb.length - 1];
  const ours = await lowrankTime(a, b, (x, y) => x.matmul(y));
  const ta = tf.randomNormal(sa);
  const tb = tf.randomNormal(sb);
  const theirs = await timeIt(
    () => tf.matMul(ta, tb).dispose(),
    () => syncTf(s),
    minMs,
  );
  const label = `[${sa}]@[${sb}]`;
  console.log(
    `${label.padEnd(26)} ${fmt(flops / ours / 1e12)}        ${fmt(flops / theirs / 1e12)}     ${fmt(theirs / ours)}`,
  );
  lr.dispose(a, b);
  tf.dispose([ta, tb]);
}
console.log(`\n# lowrank context: ${JSON.stringify(lr.webgpuStats())}`);
lr.destroyWebGPU();
process.exit(0);
