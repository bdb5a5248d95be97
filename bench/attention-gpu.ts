/**
 * Fused attention on WebGPU: forward and forward + backward milliseconds of
 * lr.scaledDotProductAttention (flash-attention kernels) beside the composed ops (matmul →
 * where → softmax → matmul and their gradients), causal, float32, and a GPU-time breakdown per
 * kernel. PyTorch's numbers come from bench/attention_torch.py on the same shapes.
 *   pnpm bench bench/attention-gpu.ts --b 8 --h 12 --d 64 --t 512,1024
 */
import '../packages/autograd/src/index.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const B = numberArg('b', 8);
const H = numberArg('h', 12);
const D = numberArg('d', 64);
const TS = arg('t', '512,1024').split(',').map(Number);
const composedToo = arg('composed', '1') === '1';

async function sync(): Promise<void> {
  await lr.getBackend('webgpu').flush?.();
  const x = lr.zeros([1], { device: 'webgpu' });
  await x.data();
  x.dispose();
}

/** Milliseconds per call: warm-up, then the best of 3 batches of `reps`. */
async function time(fn: () => void, reps: number): Promise<number> {
  fn();
  await sync();
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    await sync();
    best = Math.min(best, (performance.now() - t0) / reps);
  }
  return best;
}

function composed(q: lr.Tensor, k: lr.Tensor, v: lr.Tensor, causal: lr.Tensor): lr.Tensor {
  const s = lr.matmul(q, k.transpose(-2, -1)).mul(1 / Math.sqrt(D));
  return lr.matmul(lr.where(causal, s, Number.NEGATIVE_INFINITY).softmax(-1), v);
}

const r = await lr.init({ backend: 'webgpu' });
console.log(`device ${r.description}; B=${B} H=${H} D=${D} causal float32`);
for (const T of TS) {
  const device = 'webgpu';
  lr.manualSeed(0);
  const q = lr.randn([B, H, T, D], { device, requiresGrad: true });
  const k = lr.randn([B, H, T, D], { device, requiresGrad: true });
  const v = lr.randn([B, H, T, D], { device, requiresGrad: true });
  const g = lr.randn([B, H, T, D], { device });
  const clear = () => {
    for (const x of [q, k, v]) {
      x.grad?.dispose();
      x.grad = null;
    }
  };
  const fwd = () =>
    lr.tidy(() => void lr.withoutRecording(() => lr.scaledDotProductAttention(q, k, v, { causal: true })));
  const fb = () => {
    lr.tidy(() => lr.scaledDotProductAttention(q, k, v, { causal: true }).backward(g));
    clear();
  };
  const reps = T >= 1024 ? 10 : 20;
  const tf = await time(fwd, reps);
  const tfb = await time(fb, reps);
  console.log(`RESULT fused T=${T} forward_ms ${tf.toFixed(3)} fwd_bwd_ms ${tfb.toFixed(3)}`);
  // GPU time per kernel of one forward + backward
  const prof = lr.webgpuProfiler();
  if (prof) {
    prof.profileKernels(true);
    fb();
    await sync();
    const m = await prof.readKernelProfile();
    prof.profileKernels(false);
    const rows = [...m.entries()].sort((a, b) => b[1].ns - a[1].ns).slice(0, 6);
    for (const [key, { count, ns }] of rows)
      console.log(`  kernel ${key} x${count} ${(ns / 1e6).toFixed(3)} ms`);
  }
  if (composedToo) {
    const causal = lr
      .arange(T, undefined, 1, { device })
      .reshape([1, T])
      .le(lr.arange(T, undefined, 1, { device }).reshape([T, 1]));
    const cf = await time(
      () => lr.tidy(() => void lr.withoutRecording(() => composed(q, k, v, causal))),
      reps,
    );
    const cfb = await time(() => {
      lr.tidy(() => composed(q, k, v, causal).backward(g));
      clear();
    }, reps);
    console.log(`RESULT composed T=${T} forward_ms ${cf.toFixed(3)} fwd_bwd_ms ${cfb.toFixed(3)}`);
    // the fused kernels' gradients against the composed ops' on this device (the tiles the
    // device's workgroup memory picks are not all reachable on lavapipe)
    const gradsOf = async (f: () => lr.Tensor) => {
      clear();
      lr.tidy(() => f().backward(g));
      const out = await Promise.all([q, k, v].map((x) => x.grad!.data()));
      clear();
      return out;
    };
    const want = await gradsOf(() => composed(q, k, v, causal));
    const got = await gradsOf(() => lr.scaledDotProductAttention(q, k, v, { causal: true }));
    const outs = await Promise.all(
      [composed(q, k, v, causal), lr.scaledDotProductAttention(q, k, v, { causal: true })].map(async (t) => {
        const d = await t.data();
        t.dispose();
        return d;
      }),
    );
    want.push(outs[0]);
    got.push(outs[1]);
    const diff = want.map((w, i) => w.reduce((m, x, j) => Math.max(m, Math.abs(x - got[i][j])), 0));
    console.log(
      `CHECK T=${T} max|fused - composed| dq ${diff[0].toExponential(2)} dk ${diff[1].toExponential(2)} dv ${diff[2].toExponential(2)} out ${diff[3].toExponential(2)}`,
    );
    causal.dispose();
  }
  // decode: one query per head over a T-token cache (the split-key kernels)
  const q1 = lr.randn([B, H, 1, D], { device });
  const dec = await time(
    () => lr.tidy(() => void lr.scaledDotProductAttention(q1, k.detach(), v.detach())),
    50,
  );
  console.log(`RESULT fused decode S=${T} forward_ms ${dec.toFixed(4)}`);
  lr.dispose(q, k, v, g, q1);
}
lr.destroyWebGPU?.();
