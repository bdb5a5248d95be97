/**
 * Dropout with the device generator against the host masks it replaced, in one process on one
 * device: milliseconds per forward + backward of
 * - `F.dropout` over [B, T, C] (the device draw: one fused kernel each way) beside the old path,
 *   a mask of B·T·C floats drawn by `Generator.nextFloat` on the host and uploaded (`hostTensor`);
 * - attention with dropoutP > 0: the fused kernels (mask regenerated in-kernel) beside the old
 *   composition (matmul → where → softmax → host-mask dropout → matmul, [B, H, T, T] kept).
 * On the CPU's Wasm backend both device paths are timed twice: with Philox in Wasm (the
 * default) and with the TypeScript Philox it replaced (`useWasmPhilox(false)`: the random leaf
 * on the TypeScript elementwise kernel, the attention mask by `attentionKeep` per element).
 *   pnpm bench bench/dropout.ts --device cpu --b 2 --t 256 --c 768 --h 12 [--threads 2]
 */
import { loadavg } from 'node:os';
import '../packages/autograd/src/index.js';
import { F } from '../packages/nn/src/index.js';
import { useWasmPhilox } from '../packages/tensor/src/backends/wasm/philox.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const device = arg('device', 'cpu') as lr.Device;
const B = numberArg('b', 2);
const T = numberArg('t', 256);
const C = numberArg('c', 768);
const H = numberArg('h', 12);
const P = numberArg('p', 0.1);
const reps = numberArg('reps', 3);

const threads = numberArg('threads', 1);
if (device === 'webgpu') await lr.init({ backend: 'webgpu' });
else if (threads > 1) await lr.init({ backend: 'cpu', threads });
// the Wasm backend is the CPU's default in Node; with LOWRANK_CPU=ts the toggle changes nothing
const wasmCpu = device === 'cpu' && lr.getBackend('cpu').description.includes('Wasm');

/** `fn` timed with the TypeScript Philox in the Wasm kernels (null where there is no Wasm backend). */
async function withTsPhilox(fn: () => Promise<number>): Promise<number | null> {
  if (!wasmCpu) return null;
  useWasmPhilox(false);
  try {
    return await fn();
  } finally {
    useWasmPhilox(true);
  }
}
const vs = (ms: number | null, base: number) =>
  ms === null ? '' : `, TypeScript Philox ${ms.toFixed(1)} ms (${(ms / base).toFixed(2)}x)`;

async function sync(): Promise<void> {
  await lr.getBackend(device).flush?.();
  const x = lr.zeros([1], { device });
  await x.data();
  x.dispose();
}

/** Milliseconds per call: a warm-up, then the best of `reps` calls. */
async function time(fn: () => Promise<void>): Promise<number> {
  await fn();
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    await sync();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** The replaced dropout: a host mask of nextFloat draws, uploaded. */
function hostDropout(x: lr.Tensor, p: number, gen: lr.Generator): lr.Tensor {
  const scale = 1 / (1 - p);
  const n = x.size;
  const mask = lr.hostTensor(
    () => {
      const m = new Float32Array(n);
      for (let i = 0; i < n; i++) m[i] = gen.nextFloat() < p ? 0 : scale;
      return m;
    },
    x.shape,
    { device: x.device },
  );
  return x.mul(mask);
}

const loadAverage = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

const gen = new lr.Generator(0);
const x = lr.randn([B, T, C], { device, requiresGrad: true });
const step = (f: (t: lr.Tensor) => lr.Tensor) => async () => {
  x.grad?.dispose();
  x.grad = null;
  lr.tidy(() => f(x).sum().backward());
  await x.grad!.data();
};
const deviceDropout = step((t) => F.dropout(t, P, true, { generator: gen }));
const deviceMs = await time(deviceDropout);
const tsDeviceMs = await withTsPhilox(() => time(deviceDropout));
const hostMs = await time(step((t) => hostDropout(t, P, gen)));
console.log(`${lr.getBackend(device).description}; p = ${P}; load average ${loadAverage()}`);
console.log(
  `dropout [${B}, ${T}, ${C}] fwd+bwd: device draw ${deviceMs.toFixed(1)} ms${vs(tsDeviceMs, deviceMs)}, host mask ${hostMs.toFixed(1)} ms (${(hostMs / deviceMs).toFixed(2)}x)`,
);

const d = C / H;
const qkv = [0, 1, 2].map(() => lr.randn([B, H, T, d], { device, requiresGrad: true }));
const attnStep = (f: (q: lr.Tensor, k: lr.Tensor, v: lr.Tensor) => lr.Tensor) => async () => {
  for (const t of qkv) {
    t.grad?.dispose();
    t.grad = null;
  }
  lr.tidy(() => f(qkv[0], qkv[1], qkv[2]).sum().backward());
  await qkv[0].grad!.data();
};
const fusedStep = attnStep((q, k, v) =>
  F.scaledDotProductAttention(q, k, v, { isCausal: true, dropoutP: P, generator: gen }),
);
const fusedMs = await time(fusedStep);
const tsFusedMs = await withTsPhilox(() => time(fusedStep));
const composedMs = await time(
  attnStep((q, k, v) => {
    const s = lr.matmul(q, k.transpose(-2, -1)).mul(1 / Math.sqrt(d));
    const w = lr.where(F.causalMask(T, T, device), s, Number.NEGATIVE_INFINITY).softmax(-1);
    return lr.matmul(hostDropout(w, P, gen), v);
  }),
);
console.log(
  `causal attention [${B}, ${H}, ${T}, ${d}] with dropout fwd+bwd: fused ${fusedMs.toFixed(1)} ms${vs(tsFusedMs, fusedMs)}, composed with a host mask ${composedMs.toFixed(1)} ms (${(composedMs / fusedMs).toFixed(2)}x)`,
);
