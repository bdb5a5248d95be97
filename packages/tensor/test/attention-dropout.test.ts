import { describe, expect, it } from 'vitest';
import type { AttentionParams } from '../src/backend.js';
import {
  attention as tsAttention,
  attentionBackward as tsAttentionBackward,
} from '../src/backends/cpu/attention.js';
import { wasmAttention } from '../src/backends/wasm/attention.js';
import { serialExecutor } from '../src/backends/wasm/matmul.js';
import { WasmRuntime } from '../src/backends/wasm/runtime.js';
import type { TypedArray } from '../src/dtype.js';
import * as lr from '../src/index.js';
import { contiguousStrides } from '../src/shape.js';
import type { Storage, View } from '../src/storage.js';
import { attentionInputs, type AttentionCase as Case, maxDiff } from './attention-reference.js';
import { attentionDropFactors, firstKey } from './philox-reference.js';

/**
 * Dropout inside the fused attention (CPU): the output equals the composed ops with the dropout
 * factors applied to the softmax weights, the factors built here from a naive Philox for the
 * key the op drew (causal, GQA, masks, L and S off the GPU tiles), and the Wasm kernels equal
 * the TypeScript reference loops with dropout, forward and backward.
 */

/** softmax(q·kᵀ·scale + mask) ∘ z, then ·v (GQA by broadcasting kv heads), [B, H, L, Ev]. */
function composedWithDrop(
  q: lr.Tensor,
  k: lr.Tensor,
  v: lr.Tensor,
  z: Float32Array,
  o: { mask?: lr.Tensor | null; causal?: boolean },
): lr.Tensor {
  const [b, h, l, e] = q.shape;
  const [, hkv, s] = k.shape;
  const g = h / hkv;
  const kx = k.reshape([b, hkv, 1, s, e]).expand([b, hkv, g, s, e]).reshape([b, h, s, e]);
  const vx = v
    .reshape([b, hkv, 1, s, v.shape[3]])
    .expand([b, hkv, g, s, v.shape[3]])
    .reshape([b, h, s, v.shape[3]]);
  let sc = lr.matmul(q, kx.transpose(-2, -1)).mul(1 / Math.sqrt(e));
  if (o.causal) {
    const i = lr.arange(l).reshape([l, 1]);
    const j = lr.arange(s).reshape([1, s]);
    sc = lr.where(j.le(i), sc, Number.NEGATIVE_INFINITY);
  }
  if (o.mask) sc = o.mask.dtype === 'bool' ? lr.where(o.mask, sc, Number.NEGATIVE_INFINITY) : sc.add(o.mask);
  const w = sc.softmax(-1).mul(lr.tensor(z, { shape: [b, h, l, s] }));
  return lr.matmul(w, vx);
}

const CASES: (Case & { p: number })[] = [
  { b: 2, hkv: 1, g: 2, l: 17, s: 17, e: 8, ev: 8, causal: true, mask: 'none', p: 0.1 },
  { b: 1, hkv: 2, g: 2, l: 33, s: 40, e: 13, ev: 3, causal: false, mask: 'bool', p: 0.5 },
  { b: 1, hkv: 1, g: 1, l: 5, s: 70, e: 4, ev: 8, causal: true, mask: 'float', p: 0.3 },
];

describe('attention with dropout (cpu)', () => {
  it('equals the composed ops with the mask built from the same Philox counters', async () => {
    let seed = 1;
    for (const c of CASES) {
      const { q, k, v, mask } = attentionInputs(c, seed, { boolCut: 0.3, floatCut: 0.8 });
      const h = c.hkv * c.g;
      const out = lr.scaledDotProductAttention(q, k, v, {
        causal: c.causal,
        mask,
        enableGqa: c.g > 1,
        dropoutP: c.p,
        generator: new lr.Generator(100 + seed),
      });
      const z = attentionDropFactors([c.b, h, c.l, c.s], firstKey(100 + seed), c.p);
      const kept = z.filter((x) => x > 0).length / z.length;
      expect(Math.abs(kept - (1 - c.p))).toBeLessThan(0.05);
      const ref = composedWithDrop(q, k, v, z, { causal: c.causal, mask });
      expect(maxDiff(await out.data(), await ref.data()), JSON.stringify(c)).toBeLessThan(2e-5);
      // without dropout the output differs (the mask is not a no-op)
      const plain = lr.scaledDotProductAttention(q, k, v, { causal: c.causal, mask, enableGqa: c.g > 1 });
      expect(maxDiff(await out.data(), await plain.data())).toBeGreaterThan(1e-3);
      seed++;
    }
  });

  it('p = 1 gives zeros; a bad p is refused', async () => {
    const q = lr.randn([1, 1, 3, 4]);
    const out = await lr.scaledDotProductAttention(q, q, q, { dropoutP: 1 }).data();
    expect(Array.from(out)).toEqual(new Array(12).fill(0));
    expect(() => lr.scaledDotProductAttention(q, q, q, { dropoutP: 1.5 })).toThrow(
      /^scaledDotProductAttention: dropoutP must be in \[0, 1\], got 1.5/,
    );
  });
});

describe('Wasm attention kernels with dropout equal the TypeScript loops', () => {
  const rt = new WasmRuntime();
  const wasm = wasmAttention(rt, serialExecutor(rt), {
    attention: tsAttention,
    attentionBackward: tsAttentionBackward,
  });
  let state = 9;
  const rnd = () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
  const view = (shape: number[]): View => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, rnd);
    return {
      storage: rt.storages.upload(data, 'float32'),
      shape,
      strides: contiguousStrides(shape),
      offset: 0,
    };
  };
  const values = (s: Storage): number[] => Array.from(s.handle as TypedArray);

  it('forward and backward, causal and GQA, L and S odd', () => {
    for (const [h, hkv, l, s, causal] of [
      [4, 2, 7, 9, true],
      [2, 2, 13, 5, false],
    ] as const) {
      const [e, ev] = [6, 5];
      const q = view([2, h, l, e]);
      const k = view([2, hkv, s, e]);
      const v = view([2, hkv, s, ev]);
      const grad = view([2, h, l, ev]);
      const params: AttentionParams = {
        scale: 0.4,
        causal,
        lse: true,
        dropout: {
          p: 0.25,
          threshold: lr.dropThreshold(0.25),
          scale: 1 / 0.75,
          key: { key0: 77, key1: 0xdeadbeef },
        },
      };
      const want = tsAttention(q, k, v, null, params);
      const got = wasm.attention(q, k, v, null, params);
      expect(maxDiff(values(got.out), values(want.out))).toBeLessThan(1e-5);
      expect(maxDiff(values(got.lse!), values(want.lse!))).toBeLessThan(1e-5);
      const asView = (st: Storage, shape: number[]): View => ({
        storage: st,
        shape,
        strides: contiguousStrides(shape),
        offset: 0,
      });
      const out = asView(want.out, [2, h, l, ev]);
      const lse = asView(want.lse!, [2, h, l]);
      const bw = tsAttentionBackward(q, k, v, null, out, grad, lse, params);
      const bg = wasm.attentionBackward(q, k, v, null, out, grad, lse, params);
      for (const n of ['dq', 'dk', 'dv'] as const)
        expect(maxDiff(values(bg[n]), values(bw[n])), n).toBeLessThan(2e-5);
      // and the dropout matters: without it dv differs
      const plain = tsAttentionBackward(q, k, v, null, out, grad, lse, { ...params, dropout: null });
      expect(maxDiff(values(plain.dv), values(bw.dv))).toBeGreaterThan(1e-3);
    }
  });
});
