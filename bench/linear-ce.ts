/**
 * The LM-head loss, fused (F.linearCrossEntropy: chunks of logits turned into the loss and the
 * gradients, never [N, V] in full) against the unfused composition (F.linear then
 * F.crossEntropy), forward + backward, on one device: median ms per step and the peak bytes of
 * live storages during the step (lr.peakMemory(), which counts what the engine holds, not the
 * WebGPU buffer pool).
 *
 *   node --conditions=source --import tsx bench/linear-ce.ts --device cpu --n 512 --v 8192
 *   bash bench/bundle.sh .gpu bench/linear-ce.ts && bash .gpu/run.sh linear-ce --device webgpu
 *
 * Defaults are GPT-2's head at B·T = 4096 (C = 768, V = 50257); `--frozen 0` trains the weight too;
 * `--ref composite` makes the unfused side the logSoftmax/gather composition (before the row kernel).
 */
import { F } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';
import { arg, numberArg } from './args.js';

const device = arg('device', 'cpu') as lr.Device;
const n = numberArg('n', 4096);
const c = numberArg('c', 768);
const v = numberArg('v', 50257);
const chunk = numberArg('chunk', 0); // 0: the op's default
const iters = numberArg('iters', 5);
const frozen = arg('frozen', '1') !== '0';
// --ref composite: the unfused side uses the composition F.crossEntropy had before the row kernel
const composite = arg('ref', 'rows') === 'composite';

if (device === 'webgpu') await lr.init({ backend: 'webgpu' });
const h = lr.randn([n, c], { device, requiresGrad: true });
const w = lr.randn([v, c], { device, requiresGrad: !frozen }).mul(0.02).detach().requiresGrad_(!frozen);
const labels = lr.randint(0, v, [n], { device, dtype: 'int32' });

/** The cross-entropy as F.crossEntropy composed it before the row kernel (logSoftmax, gather, mask). */
function composed(logits: lr.Tensor): lr.Tensor {
  const valid = labels.ne(-100);
  const nll = logits
    .logSoftmax(-1)
    .gather(1, lr.where(valid, labels, 0).unsqueeze(1))
    .squeeze(1)
    .neg();
  return lr.where(valid, nll, 0).sum().div(valid.sum());
}

async function step(fused: boolean): Promise<{ ms: number; peak: number; loss: number }> {
  const base = lr.memory().numBytes;
  lr.resetPeakMemory();
  const t0 = performance.now();
  const loss = lr.tidy(() => {
    const l = fused
      ? F.linearCrossEntropy(h, w, labels, chunk > 0 ? { chunkSize: chunk } : {})
      : composite
        ? composed(F.linear(h, w))
        : F.crossEntropy(F.linear(h, w), labels);
    l.backward();
    return l;
  });
  // reading the gradients waits for the device
  await h.grad!.data();
  if (!frozen) await w.grad!.data();
  const ms = performance.now() - t0;
  const peak = lr.peakMemory() - base;
  const value = (await loss.item()) as number;
  lr.dispose(loss, h.grad, w.grad);
  h.grad = null;
  w.grad = null;
  return { ms, peak, loss: value };
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
console.log(
  `linear-ce on ${lr.getBackend(device).description}: N=${n} C=${c} V=${v} weight ${frozen ? 'frozen' : 'trained'}`,
);
for (const fused of [true, false]) {
  const runs: { ms: number; peak: number; loss: number }[] = [];
  for (let i = 0; i < iters + 1; i++) runs.push(await step(fused));
  const timed = runs
    .slice(1)
    .map((r) => r.ms)
    .sort((a, b) => a - b); // the first run compiles
  const median = timed[Math.floor(timed.length / 2)];
  console.log(
    `${fused ? 'fused  ' : composite ? 'composite' : 'unfused'} median ${median.toFixed(1)} ms  peak ${mib(runs[1].peak)} MiB  loss ${runs[1].loss.toFixed(5)}`,
  );
}
console.log(`one [N, V] float32 tensor: ${mib(n * v * 4)} MiB`);
