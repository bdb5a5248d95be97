/**
 * CPU benchmark: lowrank's TypeScript CPU backend next to @tensorflow/tfjs-backend-cpu 4.22 in the
 * same process, on the same shapes. Prints GFLOP/s (matmul) or GB/s (elementwise, reductions) and
 * the ratio lowrank / tfjs (> 1 means lowrank is faster).
 *
 *   pnpm bench:cpu            (node --conditions=source --import tsx bench/cpu-ops.ts)
 *   pnpm bench:cpu -- --quick (fewer sizes, shorter runs); --filter=matmul (rows whose name has it)
 */
import * as lr from '@lowrank/tensor';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';

const quick = process.argv.includes('--quick');
/** `--filter=matmul` runs only the rows whose name contains the text. */
const filter = process.argv.find((a) => a.startsWith('--filter='))?.slice('--filter='.length) ?? '';
const MIN_TIME_MS = quick ? 150 : 600;

/**
 * Median seconds per call of fn in the steady state: a warm-up of at least 3 calls and
 * MIN_TIME_MS / 2 (so the JIT has optimised the hot loops), then enough calls to fill MIN_TIME_MS.
 */
function time(fn: () => void): number {
  const w0 = performance.now();
  let calls = 0;
  while (calls < 3 || performance.now() - w0 < MIN_TIME_MS / 2) {
    fn();
    calls++;
  }
  const once = Math.max((performance.now() - w0) / calls, 0.01);
  const reps = Math.max(3, Math.min(50, Math.ceil(MIN_TIME_MS / once)));
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    fn();
    samples.push(performance.now() - s);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] / 1000;
}

interface Row {
  name: string;
  unit: 'GFLOP/s' | 'GB/s';
  ours: number;
  tfjs: number;
}
const rows: Row[] = [];

function report(row: Row): void {
  rows.push(row);
  const ratio = row.ours / row.tfjs;
  console.log(
    `${row.name.padEnd(34)} lowrank ${row.ours.toFixed(2).padStart(7)} ${row.unit.padEnd(7)}  tfjs-cpu ${row.tfjs
      .toFixed(2)
      .padStart(7)} ${row.unit.padEnd(7)}  ratio ${ratio.toFixed(2).padStart(6)}×`,
  );
}

function randomValues(n: number, seed: number): Float32Array {
  const g = new lr.Generator(seed);
  const v = new Float32Array(n);
  g.fillUniform(v, -1, 1);
  return v;
}

/** Runs `ours` and `theirs` on the same host data; `amount` is FLOPs or bytes per call. */
function compare(
  name: string,
  unit: Row['unit'],
  amount: number,
  ours: () => lr.Tensor,
  theirs: () => tf.Tensor,
): void {
  if (!name.includes(filter)) return;
  const tOurs = time(() => ours().dispose());
  const tTheirs = time(() => {
    const r = theirs();
    r.dataSync(); // tfjs-cpu computes eagerly; reading makes sure nothing is deferred
    r.dispose();
  });
  report({ name, unit, ours: amount / tOurs / 1e9, tfjs: amount / tTheirs / 1e9 });
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
  lr.setDefaultDevice('cpu');
  console.log(`lowrank CPU backend vs tfjs-core ${tf.version_core} (backend '${tf.getBackend()}')`);
  console.log(`node ${process.version}, ${quick ? 'quick run' : 'full run'}; median of repeated runs\n`);

  // ---- matmul (square)
  const sizes = quick ? [128, 256, 512] : [128, 256, 512, 768, 1024];
  for (const n of sizes) {
    const av = randomValues(n * n, 1);
    const bv = randomValues(n * n, 2);
    const a = lr.fromTypedArray(av, [n, n]);
    const b = lr.fromTypedArray(bv, [n, n]);
    const ta = tf.tensor2d(av, [n, n]);
    const tb = tf.tensor2d(bv, [n, n]);
    compare(
      `matmul ${n}x${n}x${n}`,
      'GFLOP/s',
      2 * n * n * n,
      () => lr.matmul(a, b),
      () => tf.matMul(ta, tb),
    );
    lr.dispose(a, b);
    tf.dispose([ta, tb]);
  }
  // batched, and with a transposed operand (read through strides)
  {
    const [bs, n] = [8, 256];
    const av = randomValues(bs * n * n, 3);
    const bv = randomValues(bs * n * n, 4);
    const a = lr.fromTypedArray(av, [bs, n, n]);
    const b = lr.fromTypedArray(bv, [bs, n, n]);
    const ta = tf.tensor3d(av, [bs, n, n]);
    const tb = tf.tensor3d(bv, [bs, n, n]);
    compare(
      `matmul batched ${bs}x${n}x${n}x${n}`,
      'GFLOP/s',
      2 * bs * n * n * n,
      () => lr.matmul(a, b),
      () => tf.matMul(ta, tb),
    );
    const bt = b.transpose(-1, -2);
    compare(
      `matmul ${bs}x${n}³ with b transposed`,
      'GFLOP/s',
      2 * bs * n * n * n,
      () => lr.matmul(a, bt),
      () => tf.matMul(ta, tb, false, true),
    );
    lr.dispose(a, b, bt);
    tf.dispose([ta, tb]);
  }

  // ---- elementwise (bytes moved: inputs read + output written, float32)
  const n = 1 << 20;
  const xv = randomValues(n, 5);
  const yv = randomValues(n, 6);
  const x = lr.fromTypedArray(xv, [1024, 1024]);
  const y = lr.fromTypedArray(yv, [1024, 1024]);
  const row = lr.fromTypedArray(yv.subarray(0, 1024), [1024]);
  const tx = tf.tensor2d(xv, [1024, 1024]);
  const ty = tf.tensor2d(yv, [1024, 1024]);
  const trow = tf.tensor1d(yv.subarray(0, 1024));
  compare(
    'add 1024x1024',
    'GB/s',
    12 * n,
    () => lr.add(x, y),
    () => tf.add(tx, ty),
  );
  compare(
    'mul 1024x1024 by a broadcast row',
    'GB/s',
    8 * n,
    () => lr.mul(x, row),
    () => tf.mul(tx, trow),
  );
  compare(
    'exp 1024x1024',
    'GB/s',
    8 * n,
    () => lr.exp(x),
    () => tf.exp(tx),
  );
  compare(
    'sigmoid 1024x1024',
    'GB/s',
    8 * n,
    () => lr.sigmoid(x),
    () => tf.sigmoid(tx),
  );
  compare(
    'relu 1024x1024',
    'GB/s',
    8 * n,
    () => lr.relu(x),
    () => tf.relu(tx),
  );

  // ---- reductions (bytes read)
  compare(
    'sum all 1024x1024',
    'GB/s',
    4 * n,
    () => lr.sum(x),
    () => tf.sum(tx),
  );
  compare(
    'sum over last dim 1024x1024',
    'GB/s',
    4 * n,
    () => lr.sum(x, -1),
    () => tf.sum(tx, -1),
  );
  compare(
    'max over last dim 1024x1024',
    'GB/s',
    4 * n,
    () => lr.max(x, -1),
    () => tf.max(tx, -1),
  );
  compare(
    'softmax over last dim 1024x1024',
    'GB/s',
    8 * n,
    () => lr.softmax(x, -1),
    () => tf.softmax(tx, -1),
  );
  lr.dispose(x, y, row);
  tf.dispose([tx, ty, trow]);

  const mm512 = rows.find((r) => r.name === 'matmul 512x512x512');
  if (mm512) {
    const ratio = mm512.ours / mm512.tfjs;
    console.log(
      `\nmatmul 512³: ${mm512.ours.toFixed(2)} GFLOP/s, ${ratio.toFixed(2)}× tfjs-cpu (target ≥ 5×: ${ratio >= 5 ? 'met' : 'NOT met'})`,
    );
  }
  const leaked = lr.memory().numTensors;
  if (leaked !== 0) console.log(`warning: ${leaked} lowrank tensors still live`);
}

await main();
