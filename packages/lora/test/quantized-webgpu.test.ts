import { Conv1D, Linear, type QuantizedLinear, quantizeModel } from '@lowrank/nn';
import * as lr from '@lowrank/tensor';
import { dispose, Generator, randint, type Tensor } from '@lowrank/tensor';
import { describe, expect, it, vi } from 'vitest';
import { applyLora, type LoraLinear } from '../src/index.js';
import { devices, maxAbs, maxAbsDiff, TinyNet } from './helpers.js';

/**
 * LoRA over a quantized base on WebGPU against the same net on the CPU (itself checked against
 * a float32 reference in quantized.test.ts): forward, gradients of A and B, and
 * merge (requantized on each device) and mergeAndUnload({ dtype: 'f32' }).
 */
const { available, webgpuSkipReason } = await devices();

describe.skipIf(!available.includes('webgpu'))(
  `LoRA on a quantized base on webgpu${webgpuSkipReason ? ` (skipped: ${webgpuSkipReason})` : ''}`,
  () => {
    it('forward and A/B gradients match the CPU; merge requantizes alike, mergeAndUnload({ dtype: "f32" }) works', async () => {
      const config = {
        r: 2,
        loraAlpha: 4,
        targetModules: ['fc', 'c_attn', 'c_proj'],
        initLoraWeights: false,
        seed: 3,
      };
      const outs: Tensor[] = [];
      const grads: Tensor[][] = [];
      const nets: TinyNet[] = [];
      const handles: ReturnType<typeof applyLora<TinyNet>>[] = [];
      for (const device of ['cpu', 'webgpu'] as const) {
        const net = await new TinyNet(11, 6, 5, 3, 1).to(device);
        await quantizeModel(net, { bits: 'nf4', blockSize: 4, doubleQuant: true, skip: ['lm_head'] });
        expect((net.getSubmodule('c_attn') as QuantizedLinear).device).toBe(device);
        const lora = applyLora(net, config);
        const ids = randint(0, 11, [2, 3], { generator: new Generator(5), device });
        const y = net.forward(ids);
        y.sin().sum().backward();
        outs.push(y);
        grads.push(lora.trainableParameters().map((p) => p.grad!));
        nets.push(net);
        handles.push(lora);
        ids.dispose();
      }
      expect(await maxAbsDiff(outs[1], outs[0])).toBeLessThan(1e-5 * (1 + (await maxAbs(outs[0]))));
      expect(grads[1].length).toBe(6);
      for (let i = 0; i < grads[0].length; i++)
        expect(await maxAbsDiff(grads[1][i], grads[0][i])).toBeLessThan(
          1e-4 * (1 + (await maxAbs(grads[0][i]))),
        );
      // merge requantizes on each device (float64 on the CPU, float32 on the GPU: the same codes but at ties)
      vi.spyOn(console, 'warn').mockImplementation(() => {});
      const merged: Float32Array[] = [];
      for (const h of handles) {
        h.merge();
        const base = (h.model.getSubmodule('c_attn') as LoraLinear).base_layer as QuantizedLinear;
        merged.push((await base.dequantizedWeight().data()) as Float32Array);
      }
      let differ = 0;
      for (let i = 0; i < merged[0].length; i++) if (merged[1][i] !== merged[0][i]) differ++;
      expect(differ).toBeLessThanOrEqual(2);
      for (const h of handles) h.unmerge();
      const lora = handles[1];
      const plain = lora.mergeAndUnload({ dtype: 'f32' });
      expect(plain.getSubmodule('fc')).toBeInstanceOf(Linear);
      expect(plain.getSubmodule('c_attn')).toBeInstanceOf(Conv1D);
      dispose(...outs);
      for (const n of nets) n.dispose();
    });

    it('a model quantized on the CPU and moved with to("webgpu") computes what it did on the CPU', async () => {
      const net = new TinyNet(11, 6, 5, 3, 2);
      await quantizeModel(net, { bits: 'int8', blockSize: 4, skip: ['lm_head'] });
      const ids = randint(0, 11, [2, 3], { generator: new Generator(4) });
      const before = lr.quantizedMemory();
      const yc = net.forward(ids);
      await net.to('webgpu');
      const layer = net.getSubmodule('c_attn') as QuantizedLinear;
      expect(layer.device).toBe('webgpu');
      expect(layer.weight.device).toBe('webgpu');
      const idsGpu = await ids.to('webgpu');
      const yg = net.forward(idsGpu);
      expect(await maxAbsDiff(yg, yc)).toBeLessThan(1e-5 * (1 + (await maxAbs(yc))));
      // the CPU copies went with the move: the same weights are counted, now on the GPU
      expect(lr.quantizedMemory().count).toBe(before.count);
      expect(lr.quantizedMemory().bytes).toBe(before.bytes);
      dispose(ids, idsGpu, yc, yg);
      net.dispose();
    });
  },
);
