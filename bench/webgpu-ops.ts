/**
 * WebGPU elementwise/reduction benchmark: lowrank beside @tensorflow/tfjs-backend-webgpu 4.22 on the
 * same Dawn device. Prints effective GB/s (bytes read + written once) and the ratio lowrank / tfjs.
 *
 *   node --conditions=source --import tsx bench/webgpu-ops.ts [--n=16777216] [--ms=300]
 *   on a GPU machine: bash .gpu/run.sh webgpu-ops
 */
import { arg, fmt, lr, setup, syncLowrank, syncTf, tf, timeIt } from './webgpu-common.js';

const s = await setup();
const n = Number(arg('n', String(1 << 24)));
const minMs = Number(arg('ms', '300'));
const rows = 4096;
const cols = n / rows;
console.log(
  `# webgpu ops f32, ${n} elements (${rows}×${cols}) — ${s.description}; ${new Date().toISOString()}`,
);
console.log('\nop                          lowrank GB/s    tfjs GB/s    ratio');

const a = lr.randn([rows, cols], { device: 'webgpu' });
const b = lr.randn([rows, cols], { device: 'webgpu' });
const bias = lr.randn([cols], { device: 'webgpu' });
const ta = tf.randomNormal([rows, cols]);
const tb = tf.randomNormal([rows, cols]);
const tbias = tf.randomNormal([cols]);

const cases: [string, number, () => lr.Tensor, () => tf.Tensor][] = [
  ['add a+b', 3 * n * 4, () => a.add(b), () => tf.add(ta, tb)],
  ['add a+bias (broadcast)', 2 * n * 4, () => a.add(bias), () => tf.add(ta, tbias)],
  ['mul by scalar', 2 * n * 4, () => a.mul(1.5), () => tf.mul(ta, 1.5)],
  ['exp', 2 * n * 4, () => a.exp(), () => tf.exp(ta)],
  [
    'gelu (tanh)',
    2 * n * 4,
    () => a.gelu({ approximate: 'tanh' }),
    () => tf.mul(ta, tf.sigmoid(tf.mul(ta, 1.702))),
  ],
  ['transpose copy', 2 * n * 4, () => a.T.contiguous(), () => tf.transpose(ta)],
  ['sum over last dim', n * 4, () => a.sum(1), () => tf.sum(ta, 1)],
  ['sum over first dim', n * 4, () => a.sum(0), () => tf.sum(ta, 0)],
  ['sum all', n * 4, () => a.sum(), () => tf.sum(ta)],
  ['max over last dim', n * 4, () => a.max(1), () => tf.max(ta, 1)],
  ['softmax last dim', 2 * n * 4, () => a.softmax(-1), () => tf.softmax(ta)],
];
for (const [name, bytes, ours, theirs] of cases) {
  // with lazy fusion an unread result computes nothing: realize it, as a consumer would
  const t1 = await timeIt(
    () => {
      const y = lr.tidy(() => ours());
      lr.realize(y.storage);
      y.dispose();
    },
    syncLowrank,
    minMs,
  );
  const t2 = await timeIt(
    () => tf.tidy(() => theirs()).dispose(),
    () => syncTf(s),
    minMs,
  );
  console.log(
    `${name.padEnd(28)} ${fmt(bytes / t1 / 1e9, 1)}     ${fmt(bytes / t2 / 1e9, 1)}   ${fmt(t2 / t1)}`,
  );
}
console.log('\n(tfjs has no tanh-GELU kernel: its row times x·sigmoid(1.702x), three kernels)');
console.log(`# lowrank context: ${JSON.stringify(lr.webgpuStats())}`);
lr.destroyWebGPU();
process.exit(0);
