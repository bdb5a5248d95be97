import type { Module } from '@lowrank/nn';

/** Every state-dict entry of `model` as its float32 bit patterns, to compare two loads exactly. */
export async function stateBits(model: Module): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const [k, t] of Object.entries(model.stateDict())) {
    const d = await t.data();
    out.set(k, Array.from(new Uint32Array(d.buffer, d.byteOffset, d.length)));
  }
  return out;
}
