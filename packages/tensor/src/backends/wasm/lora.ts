import type { KernelTable } from '../../backend.js';
import type { Expr } from '../../expr/program.js';
import { contiguousStrides } from '../../shape.js';
import type { WasmElementwise } from './elementwise.js';
import type { WasmRuntime } from './runtime.js';

/**
 * `loraMatmul` without an adapter index (LoRA's fused expand, out = residual + α·a·w) on the
 * Wasm gemm, then residual + α·product over the product's own memory (each element is read
 * before it is written, in the same order). The TypeScript kernel sums each dot product in
 * float64 and rounds once; here the gemm accumulates in float32 and the epilogue rounds per
 * step (≈ 1e-6 relative, like `matmul`). With an index (per-sample adapters) the TypeScript
 * kernel runs.
 *
 * @example
 * registerKernels('cpu', { loraMatmul: wasmLoraMatmul(rt, ew, wasmMatmul(rt, exec), tsLoraMatmul) });
 */
export function wasmLoraMatmul(
  rt: WasmRuntime,
  ew: WasmElementwise,
  matmul: KernelTable['matmul'],
  fallback: KernelTable['loraMatmul'],
): KernelTable['loraMatmul'] {
  return (a, w, index, residual, alpha, batch, m, k, n) => {
    const f32 = (v: { storage: { dtype: string } } | null) => v === null || v.storage.dtype === 'float32';
    if (index || !f32(a) || !f32(w) || !f32(residual)) {
      return fallback(a, w, index, residual, alpha, batch, m, k, n);
    }
    const prod = matmul(a, w, batch, m, k, n);
    if (batch * m * n === 0 || (!residual && alpha === 1)) return prod;
    const shape = [batch, m, n];
    const load = (input: number): Expr => ({ kind: 'load', input, dtype: 'float32' });
    const scaled: Expr = {
      kind: 'op',
      op: 'mul',
      args: [{ kind: 'const', index: 0, dtype: 'float32' }, load(0)],
      dtype: 'float32',
    };
    const root: Expr = residual
      ? { kind: 'op', op: 'add', args: [load(1), scaled], dtype: 'float32' }
      : scaled;
    const inputs = [{ storage: prod, shape, strides: contiguousStrides(shape), offset: 0 }];
    if (residual)
      inputs.push({
        storage: residual.storage,
        shape,
        strides: [...residual.strides],
        offset: residual.offset,
      });
    if (!ew.evaluateAt({ root, inputs, consts: [Math.fround(alpha)], shape }, rt.storages.address(prod)!)) {
      throw new Error('wasm loraMatmul: the epilogue did not compile'); // float32 add/mul always do
    }
    return prod;
  };
}
