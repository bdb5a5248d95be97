/**
 * Fused attention on WebGPU: forward and forward + backward milliseconds of
 * lr.scaledDotProductAttention (flash-attention kernels) beside the composed ops (matmul →
 * where → softmax → matmul and their gradients), causal, float32, and a GPU-time breakdown per
 * kernel. PyTorch's numbers come from bench/attention_torch.py on the same shapes.
 *   pnpm bench bench/attention-gpu.ts --b 8 --h 12 --d 64 --t 512,1024
 * `--hkv 3` makes it GQA (H query heads over HKV kv heads). `--variants` measures several kernel
 * choices (attention-shared.ts `setAttentionKernels`) in one process, `;`-separated, each
 * `default` or `key=value,...`: `--variants 'dq=kernel,gqa=loop,subgroups=off;default'` is the
 * kernels before the fused dq pass beside the current ones.
 */
import '../packages/autograd/src/index.js';
import {
  type AttentionKernels,
  attentionKernels,
  setAttentionKernels,
} from '../packages/tensor/src/backends/webgpu/attention-shared.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const B = numberArg('b', 8);
const H = numberArg('h', 12);
const HKV = numberArg('hkv', H);
const D = numberArg('d', 64);
const TS = arg('t', '512,1024').split(',').map(Number);
const composedToo = arg('composed', '1') === '1';
const decodeToo = arg('decode', '1') === '1';
const DEFAULTS = attentionKernels();
const VARIANTS = arg('variants', 'default').split(';');

function variant(spec: string): AttentionKernels {
  const k = { ...DEFAULTS };
  if (spec === 'default') return k;
  for (const kv of spec.split(',')) {
    const [name, value] = kv.split('=');
    if (!(name in k))
      throw new Error(`--variants: expected a key of ${Object.keys(k).join(', ')}, got '${name}'`);
    Object.assign(k, { [name]: /^\d+$/.test(value) ? Number(value) : value });
  }
  return k;
}

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

/** k or v of HKV heads repeated to H (each kv head serves H / HKV query heads). */
const repeatHeads = (x: lr.Tensor, t: number) =>
  HKV === H
    ? x
    : x
        .unsqueeze(2)
        .expand([B, HKV, H / HKV, t, D])
        .reshape([B, H, t, D]);

function composed(q: lr.Tensor, k: lr.Tensor, v: lr.Tensor, causal: lr.Tensor): lr.Tensor {
  const t = q.shape[2];
  const s = lr.matmul(q, repeatHeads(k, t).transpose(-2, -1)).mul(1 / Math.sqrt(D));
  return lr.matmul(lr.where(causal, s, Number.NEGATIVE_INFINITY).softmax(-1), repeatHeads(v, t));
}

const r = await lr.init({ backend: 'webgpu' });
console.log(`device ${r.description}; B=${B} H=${H} HKV=${HKV} D=${D} causal float32`);
const gqa = HKV !== H;
for (const T of TS) {
  const device = 'webgpu';
  lr.manualSeed(0);
  const q = lr.randn([B, H, T, D], { device, requiresGrad: true });
  const k = lr.randn([B, HKV, T, D], { device, requiresGrad: true });
  const v = lr.randn([B, HKV, T, D], { device, requiresGrad: true });
  const g = lr.randn([B, H, T, D], { device });
  const opts = { causal: true, enableGqa: gqa };
  const clear = () => {
    for (const x of [q, k, v]) {
      x.grad?.dispose();
      x.grad = null;
    }
  };
  const fwd = () =>
    lr.tidy(() => void lr.withoutRecording(() => lr.scaledDotProductAttention(q, k, v, opts)));
  const fb = () => {
    lr.tidy(() => lr.scaledDotProductAttention(q, k, v, opts).backward(g));
    clear();
  };
  const reps = T >= 1024 ? 10 : 20;
  const gradsOf = async (f: () => lr.Tensor) => {
    clear();
    lr.tidy(() => f().backward(g));
    const out = await Promise.all([q, k, v].map((x) => x.grad!.data()));
    clear();
    const o = lr.withoutRecording(f);
    out.push((await o.data()) as Float32Array);
    o.dispose();
    return out;
  };
  const causal = lr
    .arange(T, undefined, 1, { device })
    .reshape([1, T])
    .le(lr.arange(T, undefined, 1, { device }).reshape([T, 1]));
  const want = composedToo ? await gradsOf(() => composed(q, k, v, causal)) : null;
  for (const spec of VARIANTS) {
    setAttentionKernels(variant(spec));
    const tf = await time(fwd, reps);
    const tfb = await time(fb, reps);
    console.log(
      `RESULT fused T=${T} variant ${spec} forward_ms ${tf.toFixed(3)} fwd_bwd_ms ${tfb.toFixed(3)}`,
    );
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
    if (want) {
      // the fused kernels' gradients against the composed ops' on this device (the tiles the
      // device's workgroup memory picks are not all reachable on lavapipe)
      const got = await gradsOf(() => lr.scaledDotProductAttention(q, k, v, opts));
      const diff = want.map((w, i) => w.reduce((m, x, j) => Math.max(m, Math.abs(x - got[i][j])), 0));
      console.log(
        `CHECK T=${T} variant ${spec} max|fused - composed| dq ${diff[0].toExponential(2)} dk ${diff[1].toExponential(2)} dv ${diff[2].toExponential(2)} out ${diff[3].toExponential(2)}`,
      );
    }
  }
  setAttentionKernels(DEFAULTS);
  if (composedToo) {
    const cf = await time(
      () => lr.tidy(() => void lr.withoutRecording(() => composed(q, k, v, causal))),
      reps,
    );
    const cfb = await time(() => {
      lr.tidy(() => composed(q, k, v, causal).backward(g));
      clear();
    }, reps);
    console.log(`RESULT composed T=${T} forward_ms ${cf.toFixed(3)} fwd_bwd_ms ${cfb.toFixed(3)}`);
  }
  causal.dispose();
  if (decodeToo) {
    // decode: one query per head over a T-token cache (the split-key kernels)
    const q1 = lr.randn([B, H, 1, D], { device });
    const dec = await time(
      () => lr.tidy(() => void lr.scaledDotProductAttention(q1, k.detach(), v.detach(), opts)),
      50,
    );
    console.log(`RESULT fused decode S=${T} forward_ms ${dec.toFixed(4)}`);
    q1.dispose();
  }
  lr.dispose(q, k, v, g);
}
lr.destroyWebGPU?.();
