import { describe, expect, it } from 'vitest';
import type { AttentionParams } from '../../src/backend.js';
import {
  attention as tsAttention,
  attentionBackward as tsAttentionBackward,
} from '../../src/backends/cpu/attention.js';
import { setCausalBlockRows, wasmAttention } from '../../src/backends/wasm/attention.js';
import { serialExecutor } from '../../src/backends/wasm/matmul.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import type { TypedArray } from '../../src/dtype.js';
import * as lr from '../../src/index.js';
import { contiguousStrides } from '../../src/shape.js';
import type { Storage, View } from '../../src/storage.js';

/** The Wasm attention kernels against the TypeScript reference loops (backends/cpu/attention.ts). */
const rt = new WasmRuntime();
const ref = { attention: tsAttention, attentionBackward: tsAttentionBackward };
const k = wasmAttention(rt, serialExecutor(rt), ref);

let seed = 3;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32 - 0.5;
}
function view(shape: number[], fill: () => number = rand): View {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = Float32Array.from({ length: n }, fill);
  return {
    storage: rt.storages.upload(data, 'float32'),
    shape,
    strides: contiguousStrides(shape),
    offset: 0,
  };
}
const values = (s: Storage | View): number[] =>
  Array.from(('storage' in s ? s.storage : s).handle as TypedArray);
function close(got: number[], want: number[]): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i])) expect(got[i]).toBeNaN();
    else if (!Number.isFinite(want[i])) expect(got[i]).toBe(want[i]);
    else expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(2e-5 * (1 + Math.abs(want[i])));
  }
}

describe('wasm attention', () => {
  const cases: [string, number[], number, AttentionParams, 'float' | 'bool' | null, boolean][] = [
    ['causal', [2, 2, 5, 4], 2, { scale: 0.5, causal: true, lse: true }, null, false],
    ['GQA, float mask', [1, 4, 3, 8], 2, { scale: 0.35, causal: false, lse: true }, 'float', false],
    [
      'bool mask with a fully masked row, transposed q',
      [2, 2, 4, 3],
      1,
      { scale: 1, causal: false, lse: true },
      'bool',
      true,
    ],
    ['causal, odd sizes', [1, 3, 17, 5], 3, { scale: 0.2, causal: true, lse: true }, null, false],
  ];
  for (const [name, [b, h, l, e], hkv, params, maskKind, transposeQ] of cases) {
    it(`forward and backward match the reference: ${name}`, () => {
      const s = l + 2;
      const ev = e + 1;
      let q = view([b, h, l, e]);
      if (transposeQ) {
        const t = view([b, h, e, l]);
        q = { ...t, shape: [b, h, l, e], strides: [h * e * l, e * l, 1, l] };
      }
      const kk = view([b, hkv, s, e]);
      const v = view([b, hkv, s, ev]);
      let mask: View | null = null;
      if (maskKind === 'float') mask = { ...view([1, 1, l, s]), shape: [b, h, l, s], strides: [0, 0, s, 1] };
      if (maskKind === 'bool') {
        const bits = Uint8Array.from({ length: l * s }, (_, i) => (i < s ? 0 : rand() > -0.3 ? 1 : 0));
        mask = {
          storage: rt.storages.upload(bits, 'bool'),
          shape: [b, h, l, s],
          strides: [0, 0, s, 1],
          offset: 0,
        };
      }
      const got = k.attention(q, kk, v, mask, params);
      const want = ref.attention(q, kk, v, mask, params);
      close(values(got.out), values(want.out));
      close(values(got.lse!), values(want.lse!));
      const shape4 = [b, h, l, ev];
      const out: View = { storage: want.out, shape: shape4, strides: contiguousStrides(shape4), offset: 0 };
      const lse: View = {
        storage: want.lse!,
        shape: [b, h, l],
        strides: contiguousStrides([b, h, l]),
        offset: 0,
      };
      const grad = view(shape4);
      const g = k.attentionBackward(q, kk, v, mask, out, grad, lse, params);
      const w = ref.attentionBackward(q, kk, v, mask, out, grad, lse, params);
      close(values(g.dq), values(w.dq));
      close(values(g.dk), values(w.dk));
      close(values(g.dv), values(w.dv));
    });
  }
});

describe('wasm causal attention', () => {
  it('gives the bits of the same attention with the causal mask given as a bool mask (fully masked rows too)', () => {
    // the causal flag and a lower-triangular bool mask take different paths through attn_mask: same bits
    const bitsOf = (s: Storage) =>
      Array.from(
        new Uint32Array(
          Float32Array.from(s.handle as TypedArray, (x) => (Number.isNaN(x) ? Number.NaN : x)).buffer,
        ),
      );
    for (const [b, h, l, s, e, extra] of [
      [2, 2, 5, 5, 4, false],
      [1, 3, 17, 17, 5, false],
      [1, 2, 9, 9, 4, true],
      [1, 2, 6, 4, 3, true],
      [1, 1, 4, 9, 2, false],
    ] as const) {
      const q = view([b, h, l, e]);
      const kk = view([b, h, s, e]);
      const v = view([b, h, s, e]);
      // an extra bool mask (a quarter of keys off; head 0's row 0 has no key) on top of causality
      const keep = Uint8Array.from({ length: h * l * s }, (_, x) =>
        extra && (x === 0 || rand() < -0.25) ? 0 : 1,
      );
      const tri = keep.map((m, x) => (x % s <= Math.floor(x / s) % l ? m : 0));
      const boolMask = (bits: Uint8Array): View => ({
        storage: rt.storages.upload(bits, 'bool'),
        shape: [b, h, l, s],
        strides: [0, l * s, s, 1],
        offset: 0,
      });
      const causal = { scale: 0.37, causal: true, lse: true };
      const plain = { scale: 0.37, causal: false, lse: true };
      const got = k.attention(q, kk, v, extra ? boolMask(keep) : null, causal);
      const want = k.attention(q, kk, v, boolMask(tri), plain);
      expect(bitsOf(got.out)).toEqual(bitsOf(want.out));
      expect(bitsOf(got.lse!)).toEqual(bitsOf(want.lse!));
      if (extra) expect(values(got.out).some(Number.isNaN)).toBe(true); // a row with no key was hit
      const shape4 = [b, h, l, e];
      const out: View = { storage: got.out, shape: shape4, strides: contiguousStrides(shape4), offset: 0 };
      const lse: View = {
        storage: got.lse!,
        shape: [b, h, l],
        strides: contiguousStrides([b, h, l]),
        offset: 0,
      };
      const grad = view(shape4);
      const g1 = k.attentionBackward(q, kk, v, extra ? boolMask(keep) : null, out, grad, lse, causal);
      const g2 = k.attentionBackward(q, kk, v, boolMask(tri), out, grad, lse, plain);
      for (const key of ['dq', 'dk', 'dv'] as const) expect(bitsOf(g1[key])).toEqual(bitsOf(g2[key]));
    }
  });
});

describe('wasm causal attention by row blocks of the triangle', () => {
  it('gives the bits of the whole gemms and the reference values (L = S = 77, 32-row blocks; a fully masked row; dropout)', () => {
    const bitsOf = (s: Storage) =>
      Array.from(
        new Uint32Array(
          Float32Array.from(s.handle as TypedArray, (x) => (Number.isNaN(x) ? Number.NaN : x)).buffer,
        ),
      );
    const [b, h, l, e, ev] = [2, 2, 77, 6, 5];
    const q = view([b, h, l, e]);
    const kk = view([b, h, l, e]);
    const v = view([b, h, l, ev]);
    const grad = view([b, h, l, ev]);
    // head 0's row 40 has no key (a bool mask on top of causality)
    const keep = Uint8Array.from({ length: h * l * l }, (_, x) => (x >= 40 * l && x < 41 * l ? 0 : 1));
    const mask: View = {
      storage: rt.storages.upload(keep, 'bool'),
      shape: [b, h, l, l],
      strides: [0, l * l, l, 1],
      offset: 0,
    };
    const dropout = { p: 0.2, threshold: lr.dropThreshold(0.2), scale: 1 / 0.8, key: { key0: 5, key1: 6 } };
    for (const [m, params] of [
      [null, { scale: 0.4, causal: true, lse: true }],
      [mask, { scale: 0.4, causal: true, lse: true, dropout }],
    ] as const) {
      const runs = [32, 0].map((rows) => {
        setCausalBlockRows(rows);
        try {
          const f = k.attention(q, kk, v, m, params);
          const out: View = {
            storage: f.out,
            shape: [b, h, l, ev],
            strides: contiguousStrides([b, h, l, ev]),
            offset: 0,
          };
          const lse: View = {
            storage: f.lse!,
            shape: [b, h, l],
            strides: contiguousStrides([b, h, l]),
            offset: 0,
          };
          const g = k.attentionBackward(q, kk, v, m, out, grad, lse, params);
          return { f, g, all: [f.out, f.lse!, g.dq, g.dk, g.dv].map(bitsOf) };
        } finally {
          setCausalBlockRows(32);
        }
      });
      expect(runs[0].all).toEqual(runs[1].all);
      const want = ref.attention(q, kk, v, m, params);
      close(values(runs[0].f.out), values(want.out));
      if (m) expect(values(runs[0].f.out).some(Number.isNaN)).toBe(true);
      const lseRef: View = {
        storage: want.lse!,
        shape: [b, h, l],
        strides: contiguousStrides([b, h, l]),
        offset: 0,
      };
      const outRef: View = {
        storage: want.out,
        shape: [b, h, l, ev],
        strides: contiguousStrides([b, h, l, ev]),
        offset: 0,
      };
      const gw = ref.attentionBackward(q, kk, v, m, outRef, grad, lseRef, params);
      close(values(runs[0].g.dq), values(gw.dq));
      close(values(runs[0].g.dk), values(gw.dk));
      close(values(runs[0].g.dv), values(gw.dv));
    }
  });
});

describe('attn_ds (the backward dS row loop)', () => {
  it('equals the float64 loop bit for bit: keys two at a time, masked keys one at a time, a row with no key', () => {
    const [l, s, ev, scale] = [4, 11, 3, 0.3];
    const n = l * s;
    const p = Float32Array.from({ length: n }, () => rand() + 0.5);
    const dp = Float32Array.from({ length: n }, rand);
    const g = Float32Array.from({ length: l * ev }, rand);
    const o = Float32Array.from({ length: l * ev }, rand);
    // row 2 has no key (lse −∞); elsewhere a scattering of masked keys, pairs and singles
    const hard = Uint8Array.from({ length: n }, (_, x) =>
      Math.floor(x / s) === 2 || x % 5 === 1 || x % 7 === 3 ? 1 : 0,
    );
    const lse = Float32Array.from({ length: l }, (_, i) => (i === 2 ? Number.NEGATIVE_INFINITY : rand()));
    const at = (data: Float32Array | Uint8Array) =>
      rt.storages.address(rt.storages.upload(data, data instanceof Uint8Array ? 'bool' : 'float32'))!;
    const [pa, da, ha, ga, oa, la] = [p, dp, hard, g, o, lse].map(at);
    rt.exports.attn_ds(pa, da, ha, ga, 4 * ev, 4, oa, 4 * ev, 4, la, 4, l, s, ev, scale);
    const gotP = new Float32Array(rt.heap.memory.buffer, pa, n).slice();
    const gotDs = new Float32Array(rt.heap.memory.buffer, da, n).slice();
    for (let i = 0; i < l; i++) {
      let dsum = 0;
      for (let c = 0; c < ev; c++) dsum += g[i * ev + c] * o[i * ev + c];
      for (let j = 0; j < s; j++) {
        const x = i * s + j;
        if (hard[x]) {
          expect(gotDs[x]).toBe(0);
          if (i === 2) expect(gotP[x]).toBeNaN();
          else expect(gotP[x]).toBe(0);
        } else expect(gotDs[x]).toBe(Math.fround(p[x] * (dp[x] - dsum) * scale));
      }
    }
  });
});
