import { noGrad } from '@lowrank/autograd';
import type { Module } from '@lowrank/nn';
import type * as lr from '@lowrank/tensor';
import type { AutoCausalLM } from '../src/auto.js';

/** Every state-dict entry of `model` as its float32 bit patterns, to compare two loads exactly. */
export async function stateBits(model: Module): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const [k, t] of Object.entries(model.stateDict())) {
    const d = await t.data();
    out.set(k, Array.from(new Uint32Array(d.buffer, d.byteOffset, d.length)));
  }
  return out;
}

/** The model's logits for `ids` in eval mode, without a graph, read back (the tensor freed). */
export async function logitsOf(model: AutoCausalLM, ids: lr.Tensor): Promise<Float32Array> {
  model.eval();
  const t = noGrad(() => model.forward(ids).logits);
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}
