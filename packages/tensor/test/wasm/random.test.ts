import { describe, expect, it } from 'vitest';
import type { AttentionParams } from '../../src/backend.js';
import {
  attention as tsAttention,
  attentionBackward as tsAttentionBackward,
} from '../../src/backends/cpu/attention.js';
import { evaluateProgram } from '../../src/backends/cpu/elementwise.js';
import { ModuleBuilder } from '../../src/backends/wasm/assembler.js';
import { wasmAttention } from '../../src/backends/wasm/attention.js';
import { WasmElementwise } from '../../src/backends/wasm/elementwise.js';
import { serialExecutor } from '../../src/backends/wasm/matmul.js';
import { emitPhilox, philoxLocals, useWasmPhilox } from '../../src/backends/wasm/philox.js';
import { WorkerPool } from '../../src/backends/wasm/pool.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import { constOf as c, loadOf as load, opOf as op } from '../../src/expr/build.js';
import type { ElementwiseProgram, Expr, RandomDist, RandomLeaf } from '../../src/expr/program.js';
import * as lr from '../../src/index.js';
import { contiguousStrides } from '../../src/shape.js';
import type { Storage, View } from '../../src/storage.js';
import { naivePhilox } from '../philox-reference.js';

/**
 * Philox4x32-10 in Wasm (backends/wasm/philox.ts) against the naive BigInt Philox and Random123's
 * vectors, on counters and keys near 2³² (the key bumps wrap), and the Wasm elementwise kernel's
 * random leaves against the TypeScript interpreter, bit for bit: sizes 1, 3, 17, 257, strided and
 * broadcast draws, positions across 2³¹ (the sign bit of the i32 the kernel steps), normal draws.
 */

/** A module exporting philox(c0, c1, c2, c3, k0, k1) that writes the four words at address 0. */
function wasmPhilox(): (ctr: readonly number[], key: readonly number[]) => number[] {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const m = new ModuleBuilder({ initial: 1, shared: false });
  const f = m.function('philox', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const ph = philoxLocals(f);
  for (let i = 0; i < 4; i++) f.get(f.param(i)).set(ph.x[i]);
  emitPhilox(f, ph, f.param(4), f.param(5));
  for (let i = 0; i < 4; i++)
    f.i32(4 * i)
      .get(ph.x[i])
      .mem('i32.store');
  const inst = new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { env: { memory } });
  const run = inst.exports.philox as (...a: number[]) => void;
  return (ctr, key) => {
    run(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
    return Array.from(new Uint32Array(memory.buffer, 0, 4));
  };
}

describe('Philox4x32-10 in Wasm', () => {
  const philox = wasmPhilox();

  it("matches Random123's known-answer vectors", () => {
    expect(philox([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    const ones = 0xffffffff;
    expect(philox([ones, ones, ones, ones], [ones, ones])).toEqual([
      0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd,
    ]);
    expect(philox([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([
      0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1,
    ]);
  });

  it('matches the naive BigInt Philox on counters and keys near 2^32 and at random', () => {
    const edge = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
    for (const a of edge) {
      for (const b of edge) {
        const ctr = [a, b, 0xffffffff - a, (b ^ 0x41545431) >>> 0];
        const key = [b, 0xffffffff - a];
        expect(philox(ctr, key)).toEqual(naivePhilox(ctr, key));
      }
    }
    let seed = 5;
    const next = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed;
    };
    for (let t = 0; t < 300; t++) {
      const ctr = [next(), next(), next(), next()];
      const key = [next(), next()];
      expect(philox(ctr, key)).toEqual(naivePhilox(ctr, key));
    }
  });
});

const rt = new WasmRuntime();
const ew = new WasmElementwise(rt);
const rnd = (index: number, dist: RandomDist = 'uniform'): Expr => ({
  kind: 'random',
  index,
  dist,
  dtype: 'float32',
});
const leaf = (key0: number, key1: number, strides: number[], offset = 0): RandomLeaf => ({
  key: { key0, key1 },
  strides,
  offset,
});
function view(shape: number[]): View {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 3);
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  return { storage: rt.storages.upload(data, 'float32'), shape, strides, offset: 0 };
}
/** The Wasm kernel's and the TypeScript interpreter's bits of `p`. */
function both(p: ElementwiseProgram): [number[], number[]] {
  const out = ew.run(p);
  if (!out) throw new Error('the Wasm compiler refused the program');
  const bits = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));
  return [bits(out.handle as Float32Array), bits(evaluateProgram(p))];
}

describe('random leaves in the Wasm elementwise kernel', () => {
  for (const n of [1, 3, 17, 257]) {
    it(`rand and dropout of ${n} elements equal the TypeScript kernel bit for bit`, () => {
      const keys = [0x12345678, 0xfffffffe];
      const rand: ElementwiseProgram = {
        root: rnd(0),
        inputs: [],
        consts: [],
        shape: [n],
        rng: [leaf(keys[0], keys[1], [1])],
      };
      const [got, want] = both(rand);
      expect(got).toEqual(want);
      // the values are the naive Philox's uniforms (not only the same as the TypeScript kernel)
      const u = new Float32Array(new Uint32Array(got).buffer);
      for (let i = 0; i < n; i++) {
        expect(u[i]).toBe((naivePhilox([i >>> 2, 0, 0, 0], keys)[i & 3] >>> 8) / 2 ** 24);
      }
      // F.dropout's program: where(rand ≥ p, x·scale, 0)
      const x = view([n]);
      const drop: ElementwiseProgram = {
        root: {
          kind: 'op',
          op: 'where',
          args: [op('ge', rnd(0), c(0)), op('mul', load(0), c(1)), c(2)],
          dtype: 'float32',
        },
        inputs: [x],
        consts: [Math.fround(0.1), Math.fround(1 / 0.9), 0],
        shape: [n],
        rng: [leaf(7, 0xffffffff, [1])],
      };
      const [dGot, dWant] = both(drop);
      expect(dGot).toEqual(dWant);
    });
  }

  it('strided, broadcast and offset draws, and two draws in one program, equal the TypeScript kernel', () => {
    const x = view([5, 17]);
    // a transposed [17, 5] draw read as [5, 17], plus a row-broadcast one at an offset
    const p: ElementwiseProgram = {
      root: op('add', op('mul', load(0), rnd(0)), rnd(1)),
      inputs: [x],
      consts: [],
      shape: [5, 17],
      rng: [leaf(1, 2, [1, 5]), leaf(0xdeadbeef, 3, [0, 1], 40)],
    };
    const [got, want] = both(p);
    expect(got).toEqual(want);
    // a 3-D layout with an odd inner size
    const q: ElementwiseProgram = {
      root: rnd(0),
      inputs: [],
      consts: [],
      shape: [3, 4, 17],
      rng: [leaf(9, 9, [68, 17, 1], 3)],
    };
    const [qGot, qWant] = both(q);
    expect(qGot).toEqual(qWant);
  });

  it('positions across 2^31 (the i32 sign bit) give the TypeScript kernel bits', () => {
    const p: ElementwiseProgram = {
      root: rnd(0),
      inputs: [],
      consts: [],
      shape: [257],
      rng: [leaf(4, 5, [1], 2 ** 31 - 130)],
    };
    const [got, want] = both(p);
    expect(got).toEqual(want);
    const u = new Float32Array(new Uint32Array(got).buffer);
    const i = 2 ** 31 + 1; // element 131
    expect(u[131]).toBe((naivePhilox([Math.floor(i / 4), 0, 0, 0], [4, 5])[i % 4] >>> 8) / 2 ** 24);
  });

  for (const n of [1, 3, 17, 257]) {
    it(`randn of ${n} elements (Box–Muller with Math.log and Math.cos) equals the TypeScript kernel bit for bit`, () => {
      const p: ElementwiseProgram = {
        root: op('add', op('mul', rnd(0, 'normal'), c(0)), c(1)),
        inputs: [],
        consts: [Math.fround(0.02), 0],
        shape: [n],
        rng: [leaf(0x9e3779b9, 0xbb67ae85, [1])],
      };
      const [got, want] = both(p);
      expect(got).toEqual(want);
    });
  }
});

describe('the Wasm attention-dropout mask', () => {
  it('attn_dropmask gives the naive Philox factors over odd L and S (a partial last group)', () => {
    for (const [l, s, bh] of [
      [1, 1, 0],
      [3, 17, 5],
      [17, 257, 0x7fffffff],
    ] as const) {
      const key = [0xffffffff, 0x80000000];
      const p = 0.3;
      const scale = 1 / (1 - p);
      const z = rt.heap.alloc(4 * l * s + 4);
      const guard = new Float32Array(rt.heap.memory.buffer, z + 4 * l * s, 1);
      guard[0] = 42;
      rt.exports.attn_dropmask(z, 0, l, s, bh, key[0], key[1], lr.dropThreshold(p), scale);
      const got = Array.from(new Float32Array(rt.heap.memory.buffer, z, l * s));
      expect(guard[0]).toBe(42); // nothing written past the head
      rt.heap.free(z);
      // word j mod 4 of the naive Philox of (⌊j/4⌋, i, bh, "ATT1"), kept when its uniform ≥ float32(p)
      const want: number[] = [];
      for (let i = 0; i < l; i++) {
        for (let j = 0; j < s; j++) {
          const w = naivePhilox([j >>> 2, i, bh, 0x41545431], key)[j & 3];
          want.push((w >>> 8) / 2 ** 24 >= Math.fround(p) ? Math.fround(scale) : 0);
        }
      }
      expect(got).toEqual(want);
      expect(want.filter((x) => x === 0).length / want.length).toBeCloseTo(p, 0);
    }
  });

  it('attention with dropout on 1 and 2 threads gives identical bits, forward and backward', async () => {
    const pool = await WorkerPool.create(rt, 2);
    expect(pool.threads).toBe(2);
    try {
      const tables = [serialExecutor(rt), pool].map((exec) =>
        wasmAttention(rt, exec, { attention: tsAttention, attentionBackward: tsAttentionBackward }),
      );
      // 2·3·64·129 probabilities a head ≥ the split threshold: the mask is split by rows
      const shape = (h: number, n: number, e: number) => [2, h, n, e];
      const q = view(shape(3, 64, 8));
      const k = view(shape(3, 129, 8));
      const v = view(shape(3, 129, 5));
      const g = view(shape(3, 64, 5));
      const params: AttentionParams = {
        scale: 0.3,
        causal: false,
        lse: true,
        dropout: {
          p: 0.2,
          threshold: lr.dropThreshold(0.2),
          scale: 1 / 0.8,
          key: { key0: 3, key1: 0xfffffff0 },
        },
      };
      const bitsOf = (st: Storage) => Array.from(new Uint32Array((st.handle as Float32Array).slice().buffer));
      const runs = tables.map((t) => {
        const f = t.attention(q, k, v, null, params);
        const outView: View = {
          storage: f.out,
          shape: shape(3, 64, 5),
          strides: contiguousStrides(shape(3, 64, 5)),
          offset: 0,
        };
        const lseView: View = {
          storage: f.lse!,
          shape: [2, 3, 64],
          strides: contiguousStrides([2, 3, 64]),
          offset: 0,
        };
        const b = t.attentionBackward(q, k, v, null, outView, g, lseView, params);
        return [f.out, b.dq, b.dk, b.dv].map(bitsOf);
      });
      expect(runs[1]).toEqual(runs[0]);
      // the TypeScript mask it replaced (`attentionKeep` per element) gives the same bits
      useWasmPhilox(false);
      try {
        const f = tables[0].attention(q, k, v, null, params);
        expect(bitsOf(f.out)).toEqual(runs[0][0]);
      } finally {
        useWasmPhilox(true);
      }
    } finally {
      pool.terminate();
    }
  });
});
