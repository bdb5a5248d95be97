import { describe, expect, it } from 'vitest';
import type { MatmulEpilogue } from '../../src/backend.js';
import { matmulEpilogue as tsMatmulEpilogue } from '../../src/backends/cpu/matmul-epilogue.js';
import { WasmElementwise } from '../../src/backends/wasm/elementwise.js';
import { wasmMatmulEpilogue } from '../../src/backends/wasm/epilogue.js';
import { serialExecutor, wasmMatmul } from '../../src/backends/wasm/matmul.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import { contiguousStrides } from '../../src/shape.js';
import type { View } from '../../src/storage.js';
import '../../src/index.js';
import { refAddmm } from '../addmm-reference.js';

/**
 * The Wasm `matmulEpilogue` (the Wasm gemm, then alpha·P + bias + residual in place by the Wasm
 * elementwise kernel) against float64 loops and against the TypeScript epilogue over the same
 * product: batches, alpha ≠ 1, bias at a stride, a transposed residual, each term on or off.
 * Its fallback here throws, so a float32 case that left the Wasm path would fail.
 */
const rt = new WasmRuntime();
const matmul = wasmMatmul(rt, serialExecutor(rt));
const k = wasmMatmulEpilogue(rt, new WasmElementwise(rt), matmul, () => {
  throw new Error('fell back to the TypeScript kernel');
});

let seed = 9;
function values(n: number): Float32Array {
  return Float32Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed / 2 ** 32) * 4 - 2;
  });
}
function view(data: Float32Array, shape: number[], strides = contiguousStrides(shape), offset = 0): View {
  return { storage: rt.storages.upload(data, 'float32'), shape, strides, offset };
}

describe('Wasm matmulEpilogue', () => {
  it('equals float64 loops and the TypeScript epilogue (batches, alpha, strided bias, transposed residual)', () => {
    let cases = 0;
    for (const [batch, m, kk, n] of [
      [1, 5, 7, 3],
      [2, 17, 33, 9],
      [3, 1, 4, 65],
    ])
      for (const alpha of [1, -0.5])
        for (const withBias of [false, true])
          for (const withRes of [false, true]) {
            const av = values(batch * m * kk);
            const bv = values(batch * kk * n);
            const biasv = values(2 * n); // read at stride 2
            const resv = values(batch * m * n); // stored [batch, n, m], read transposed
            const a = view(av, [batch, m, kk]);
            const b = view(bv, [batch, kk, n]);
            const bias = withBias ? view(biasv, [n], [2]) : null;
            const residual = withRes ? view(resv, [batch, m, n], [m * n, 1, m]) : null;
            const epi: MatmulEpilogue = { alpha, bias, residual };
            const got = k(a, b, batch, m, kk, n, epi).handle as Float32Array;
            const ts = tsMatmulEpilogue(a, b, batch, m, kk, n, epi).handle as Float32Array;
            for (let bi = 0; bi < batch; bi++) {
              const rows = av.subarray(bi * m * kk, (bi + 1) * m * kk);
              const cols = bv.subarray(bi * kk * n, (bi + 1) * kk * n);
              const bias1 = withBias ? Array.from({ length: n }, (_, j) => biasv[2 * j]) : null;
              const res1 = withRes
                ? Array.from({ length: m * n }, (_, e) => resv[bi * m * n + (e % n) * m + Math.floor(e / n)])
                : null;
              const want = refAddmm(rows, cols, m, kk, n, bias1, res1, alpha);
              for (let e = 0; e < m * n; e++) {
                const i = bi * m * n + e;
                const what = `[${batch},${m},${kk},${n}] alpha=${alpha} bias=${withBias} res=${withRes} ${i}`;
                // float32 gemm accumulation: ≈ k ulps of the terms' magnitude
                expect(Math.abs(got[i] - want[e]), what).toBeLessThanOrEqual(2e-6 * (kk + 4));
                // over the same product, the per-step roundings are within 2 ulps of the largest term
                const scale =
                  Math.abs(ts[i]) + (bias1 ? Math.abs(bias1[e % n]) : 0) + (res1 ? Math.abs(res1[e]) : 0) + 4;
                expect(Math.abs(got[i] - ts[i]), what).toBeLessThanOrEqual(2 ** -22 * scale);
              }
            }
            cases++;
          }
    expect(cases).toBe(24);
  });
});
