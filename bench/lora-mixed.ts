/**
 * Mixed-adapter batches: throughput of one batch whose samples use N different LoRA adapters
 * (gathered A/B + batched matmuls, `lora.forward(x, { adapterNames })`) against the same batch
 * with a single adapter (the ordinary unmerged path), and against PEFT's approach (a loop over
 * the distinct adapters, one sub-batch each). Target: mixed ≥ 0.8× single on the H100.
 *
 *   node --conditions=source --import tsx bench/lora-mixed.ts                    (CPU)
 *   XDG_RUNTIME_DIR=/tmp node --conditions=source --import tsx bench/lora-mixed.ts --device=webgpu
 *   options: --quick, --d=1024 --layers=8 --batch=32 --seq=64 --r=8 --adapters=1,8,32,128
 */

import { applyLora, type LoraModel } from '../packages/lora/src/index.js';
import { Linear, Module } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';

const arg = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = process.argv.includes('--quick');
const device = (arg('device') ?? 'cpu') as lr.Device;
const gpu = device === 'webgpu';
const d = Number(arg('d') ?? (gpu ? 1024 : quick ? 128 : 256));
const layers = Number(arg('layers') ?? (gpu ? 8 : 4));
const batch = Number(arg('batch') ?? (gpu ? 32 : 16));
const seq = Number(arg('seq') ?? (gpu ? 64 : quick ? 8 : 16));
const r = Number(arg('r') ?? 8);
const counts = (arg('adapters') ?? (quick ? '1,4,16' : '1,4,16,64')).split(',').map(Number);
const MIN_MS = quick ? 300 : 1500;

/** An attention-like block: q, k, v, o projections (LoRA on q and v, as the paper). */
class Block extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  constructor(g: lr.Generator) {
    super();
    this.q = this.registerModule('q', new Linear(d, d, { generator: g, device }));
    this.k = this.registerModule('k', new Linear(d, d, { generator: g, device }));
    this.v = this.registerModule('v', new Linear(d, d, { generator: g, device }));
    this.o = this.registerModule('o', new Linear(d, d, { generator: g, device }));
  }
  forward(x: lr.Tensor): lr.Tensor {
    return lr.tidy(() =>
      this.o.forward(this.q.forward(x).add(this.k.forward(x)).mul(this.v.forward(x)).tanh()).add(x),
    );
  }
}

class Net extends Module {
  readonly blocks: Block[];
  constructor() {
    super();
    const g = new lr.Generator(0);
    this.blocks = Array.from({ length: layers }, (_, i) => this.registerModule(`h${i}`, new Block(g)));
  }
  forward(x: lr.Tensor): lr.Tensor {
    let h = x;
    for (const b of this.blocks) {
      const next = b.forward(h);
      if (h !== x) h.dispose();
      h = next;
    }
    return h;
  }
}

/** Median ms per call after a warm-up; each call waits for the device (reads one number). */
async function time(fn: () => lr.Tensor): Promise<number> {
  const once = async (): Promise<number> => {
    const t0 = performance.now();
    const y = fn();
    const s = lr.tidy(() => y.sum());
    await s.item();
    lr.dispose(y, s);
    return performance.now() - t0;
  };
  const w0 = performance.now();
  let calls = 0;
  while (calls < 2 || performance.now() - w0 < MIN_MS / 3) {
    await once();
    calls++;
  }
  const samples: number[] = [];
  const s0 = performance.now();
  while (samples.length < 3 || (performance.now() - s0 < MIN_MS && samples.length < 50))
    samples.push(await once());
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

/** PEFT's way: one forward per distinct adapter on its sub-batch, results put back in order. */
function loopForward(lora: LoraModel<Net>, x: lr.Tensor, names: string[]): lr.Tensor {
  const distinct = [...new Set(names)];
  const parts: lr.Tensor[] = [];
  const order: number[] = [];
  for (const n of distinct) {
    const idx = names.flatMap((m, i) => (m === n ? [i] : []));
    lora.setAdapter(n);
    lora.model.requiresGrad_(false);
    const sub = x.indexSelect(0, lr.tensor(Int32Array.from(idx), { device }));
    parts.push(lora.model.forward(sub));
    sub.dispose();
    order.push(...idx);
  }
  const inverse = new Int32Array(order.length);
  order.forEach((sample, pos) => {
    inverse[sample] = pos;
  });
  return lr.tidy(() => lr.cat(parts, 0).indexSelect(0, lr.tensor(inverse, { device })));
}

if (gpu) {
  await lr.init({ backend: 'webgpu' });
}
const info = gpu ? lr.getBackend('webgpu').description : lr.getBackend('cpu').description;
console.log(
  `lora-mixed on ${device} (${info}): d=${d}, layers=${layers}, batch=${batch}, seq=${seq}, r=${r}, LoRA on q,v`,
);
console.log(
  'adapters | single-adapter tok/s | mixed tok/s | mixed/single | PEFT-style loop tok/s | loop/single',
);

const tokens = batch * seq;
const x = lr.randn([batch, seq, d], { generator: new lr.Generator(1), device });
for (const n of counts) {
  const net = new Net();
  net.eval();
  const targets = { r, loraAlpha: 2 * r, targetModules: ['q', 'v'], initLoraWeights: false as const };
  const lora = applyLora(net, { ...targets, seed: 0 }, 'a0');
  for (let i = 1; i < n; i++) lora.addAdapter(`a${i}`, { ...targets, seed: i });
  const names = Array.from({ length: batch }, (_, i) => `a${i % n}`);
  lora.setAdapter('a0');
  net.requiresGrad_(false); // inference: no graph is recorded
  const single = await time(() => net.forward(x));
  const mixed = await time(() => lora.forward(x, { adapterNames: names }));
  const loop = await time(() => loopForward(lora, x, names));
  const tps = (ms: number): string => ((tokens / ms) * 1000).toFixed(0).padStart(10);
  console.log(
    `${String(n).padStart(8)} | ${tps(single)}           | ${tps(mixed)}  | ${(single / mixed).toFixed(2).padStart(12)} | ${tps(loop)}            | ${(single / loop).toFixed(2)}`,
  );
  net.dispose();
}
x.dispose();
process.exit(0);
