import type { KernelTable } from '../../backend.js';
import type { WasmElementwise } from './elementwise.js';
import { epilogueInPlace } from './epilogue.js';
import type { WasmRuntime } from './runtime.js';

/**
 * `loraMatmul` without an adapter index (LoRA's fused expand, out = residual + α·a·w) on the
 * Wasm gemm, then α·product + residual over the product's own memory (`epilogueInPlace`). The TypeScript kernel sums each dot product in
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
    epilogueInPlace(rt, ew, 'loraMatmul', prod, [batch, m, n], alpha, null, residual);
    return prod;
  };
}
