import { Embedding } from '@lowrank/nn';
import { Generator, type Tensor, tensor } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { webgpuUnavailable } from './helpers.js';

const unavailable = await webgpuUnavailable();

// Token ids outside [0, V) are errors: −1 used to wrap to the last row silently.
describe('Embedding refuses ids outside [0, numEmbeddings)', () => {
  for (const device of ['cpu', 'webgpu'] as const) {
    it.skipIf(device === 'webgpu' && unavailable !== null)(`on ${device}`, async () => {
      const emb = new Embedding(4, 3, { device, generator: new Generator(1) });
      const ok = tensor([0, 3], { dtype: 'int32', device });
      const rows = emb.forward(ok);
      const w = Array.from(await emb.weight.data());
      expect(Array.from(await rows.data())).toEqual([...w.slice(0, 3), ...w.slice(9, 12)]);
      for (const id of [-1, 4]) {
        const ids = tensor([1, id], { dtype: 'int32', device });
        const message = new RegExp(`index ${id} is out of bounds for a dimension of size 4`);
        if (device === 'cpu') expect(() => emb.forward(ids)).toThrow(message);
        else {
          // WebGPU checks in the kernel and reports at the next read-back
          const out: Tensor = emb.forward(ids);
          await expect(out.data()).rejects.toThrow(message);
          out.dispose();
        }
        ids.dispose();
      }
      rows.dispose();
      ok.dispose();
      emb.dispose();
    });
  }
});
