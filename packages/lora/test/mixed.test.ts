import {
  type AutogradHooks,
  Generator,
  getAutogradHooks,
  randint,
  setAutogradHooks,
  type Tensor,
} from '@lowrank/tensor';
import { afterEach, describe, expect, it } from 'vitest';
import { applyLora } from '../src/index.js';
import { devices, maxAbsDiff, TinyNet } from './helpers.js';

const { available } = await devices();

async function setup(device: 'cpu' | 'webgpu', fused: boolean) {
  const net = await new TinyNet().to(device);
  net.eval();
  const common = { targetModules: ['emb', 'fc', 'c_attn', 'c_proj'], initLoraWeights: false as const };
  const fusedSlices = fused ? { c_attn: [true, false, true] } : undefined;
  const lora = applyLora(net, { ...common, r: 2, loraAlpha: 4, seed: 1, fusedSlices }, 'a');
  lora.addAdapter('b', { ...common, r: 3, loraAlpha: 2, useRslora: true, seed: 2, fusedSlices });
  lora.addAdapter('c', { targetModules: ['fc'], r: 1, initLoraWeights: false, seed: 3 }); // only one layer
  return { net, lora };
}

async function row(t: Tensor, i: number): Promise<Float32Array> {
  const size = t.size / t.shape[0];
  return (await t.data()).slice(i * size, (i + 1) * size) as Float32Array;
}

for (const device of available) {
  describe(`mixed-adapter batches on ${device}`, () => {
    for (const fused of [false, true]) {
      it(`equal running each sample alone (ranks 2/3/1, rsLoRA, base rows${fused ? ', fused c_attn' : ''})`, async () => {
        const { net, lora } = await setup(device, fused);
        const names = ['a', null, 'b', 'c', 'a', '__base__'];
        const ids = randint(0, 11, [names.length, 4], { generator: new Generator(3), device });
        const mixed = lora.forward(ids, { adapterNames: names });
        for (const [i, n] of names.entries()) {
          const one = ids.narrow(0, i, 1);
          if (n !== null && n !== '__base__') lora.setAdapter(n);
          const alone =
            n === null || n === '__base__' ? lora.disableAdapters(() => net.forward(one)) : net.forward(one);
          const [x, y] = [await row(mixed, i), await alone.data()];
          const err = Math.max(...Array.from(x).map((v, k) => Math.abs(v - y[k])));
          expect(err, `sample ${i} (${n})`).toBeLessThan(1e-5);
        }
        // after training further in place the cache must be refreshed; adding an adapter invalidates by itself
        lora.addAdapter('d', { targetModules: ['fc'], r: 2, initLoraWeights: false, seed: 9 });
        const again = lora.forward(ids, { adapterNames: ['d', 'd', 'd', 'd', 'd', 'd'] });
        lora.setAdapter('d');
        expect(await maxAbsDiff(again, net.forward(ids))).toBeLessThan(1e-5);
      });
    }
  });
}

describe('mixed-adapter batches: dispatch count and refusals', () => {
  let saved: AutogradHooks | null = null;
  afterEach(() => {
    if (saved) setAutogradHooks(saved);
    saved = null;
  });

  it('use the same number of matmuls whatever the number of adapters or samples (no per-sample loop)', async () => {
    const { lora } = await setup('cpu', false);
    for (const extra of ['e', 'f', 'g'])
      lora.addAdapter(extra, { targetModules: ['emb', 'fc', 'c_attn', 'c_proj'], initLoraWeights: false });
    saved = getAutogradHooks();
    const inner = saved!;
    let count = 0;
    let copies = 0;
    setAutogradHooks({
      ...inner,
      recordOp: (op, inputs, out, attrs) => {
        if (op === 'matmul' || op === 'gatherMatmul' || op === 'loraExpand') count++;
        // a gathered copy of the stacked [N+1, in, R] weights per sample (the BGMV kernels read them in place)
        if (op === 'indexSelect' && (inputs[0] as Tensor).rank === 3) copies++;
        inner.recordOp(op, inputs, out, attrs);
      },
    });
    const run = (names: (string | null)[]) => {
      const ids = randint(0, 11, [names.length, 3]);
      count = 0;
      lora.forward(ids, { adapterNames: names });
      return count;
    };
    const one = run(['a', 'a']);
    const many = run(['a', 'b', 'c', 'e', 'f', 'g', null, 'b']);
    expect(many).toBe(one);
    expect(one).toBeGreaterThan(0);
    expect(copies).toBe(0);
  });

  it('are refused in training mode, while merged, with a wrong count or an unknown name', async () => {
    const { net, lora } = await setup('cpu', false);
    const ids = randint(0, 11, [2, 3]);
    net.train();
    expect(() => lora.forward(ids, { adapterNames: ['a', 'b'] })).toThrow(
      /for inference; call eval\(\) first/,
    );
    net.eval();
    expect(() => lora.forward(ids, { adapterNames: ['a'] })).toThrow(/1 adapterNames for a batch of 2/);
    expect(() => lora.forward(ids, { adapterNames: ['a', 'zzz'] })).toThrow(/no adapter 'zzz'/);
    lora.merge();
    expect(() => lora.forward(ids, { adapterNames: ['a', 'b'] })).toThrow(
      /refused while an adapter is merged/,
    );
  });
});
