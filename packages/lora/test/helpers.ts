import { Conv1D, Embedding, Linear, Module } from '@lowrank/nn';
import { type Device, Generator, init, setDefaultDevice, type Tensor } from '@lowrank/tensor';

/**
 * A small model with one layer of every kind LoRA adapts, named like GPT-2's:
 * emb (Embedding) → fc (Linear) → c_attn (Conv1D, fused [q|k|v]) → c_proj (Linear) → lm_head.
 */
export class TinyNet extends Module {
  readonly emb: Embedding;
  readonly fc: Linear;
  readonly c_attn: Conv1D;
  readonly c_proj: Linear;
  readonly lm_head: Linear;
  constructor(
    readonly vocab = 11,
    readonly dim = 6,
    readonly hidden = 5,
    readonly slice = 3,
    seed = 0,
  ) {
    super();
    const generator = new Generator(seed);
    this.emb = this.registerModule('emb', new Embedding(vocab, dim, { generator }));
    this.fc = this.registerModule('fc', new Linear(dim, hidden, { generator }));
    this.c_attn = this.registerModule('c_attn', new Conv1D(3 * slice, hidden, { generator }));
    this.c_proj = this.registerModule('c_proj', new Linear(3 * slice, dim, { generator }));
    this.lm_head = this.registerModule('lm_head', new Linear(dim, vocab, { generator, bias: false }));
  }
  forward(ids: Tensor): Tensor {
    const h = this.fc.forward(this.emb.forward(ids)).gelu();
    return this.lm_head.forward(this.c_proj.forward(this.c_attn.forward(h)));
  }
}

export async function maxAbsDiff(a: Tensor, b: Tensor): Promise<number> {
  const [x, y] = [await a.data(), await b.data()];
  if (x.length !== y.length) throw new Error(`maxAbsDiff: sizes differ ${x.length} vs ${y.length}`);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

export async function maxAbs(a: Tensor): Promise<number> {
  let m = 0;
  for (const v of await a.data()) m = Math.max(m, Math.abs(v));
  return m;
}

/** The devices to test on: the CPU, and WebGPU when an adapter exists (else the reason it is skipped). */
export async function devices(): Promise<{ available: Device[]; webgpuSkipReason: string | null }> {
  const reason = await init({ backend: 'webgpu' })
    .then(() => null)
    .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
    .finally(() => setDefaultDevice('cpu'));
  return { available: reason ? ['cpu'] : ['cpu', 'webgpu'], webgpuSkipReason: reason };
}
