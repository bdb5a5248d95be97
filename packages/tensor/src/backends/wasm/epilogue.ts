import type { KernelTable } from '../../backend.js';
import type { Expr } from '../../expr/program.js';
import { contiguousStrides } from '../../shape.js';
import type { Storage, View } from '../../storage.js';
import type { WasmElementwise } from './elementwise.js';
import type { WasmRuntime } from './runtime.js';

/**
 * Rewrites a contiguous float32 product [batch, m, n] in the heap, in place, as
 * alpha·P + bias + residual (bias [n] broadcast over rows, residual [batch, m, n] at any strides;
 * null terms left out) by one Wasm elementwise kernel: each element is read before it is
 * written, in the same order. Each step is rounded to float32, as the composed ops would be
 * (the TypeScript epilogue rounds once from float64: ≤ 1 ulp of the largest term apart).
 * `op` names the kernel in the error raised should the program not compile (float32 add and
 * mul always do).
 *
 * @example
 * const prod = matmul(a, b, batch, m, k, n);
 * epilogueInPlace(rt, ew, 'matmulEpilogue', prod, [batch, m, n], 0.5, bias, null);
 */
export function epilogueInPlace(
  rt: WasmRuntime,
  ew: WasmElementwise,
  op: string,
  prod: Storage,
  shape: readonly [number, number, number],
  alpha: number,
  bias: View | null,
  residual: View | null,
): void {
  if (shape[0] * shape[1] * shape[2] === 0 || (alpha === 1 && !bias && !residual)) return;
  const load = (input: number): Expr => ({ kind: 'load', input, dtype: 'float32' });
  const add = (a: Expr, b: Expr): Expr => ({ kind: 'op', op: 'add', args: [a, b], dtype: 'float32' });
  const inputs: View[] = [{ storage: prod, shape, strides: contiguousStrides(shape), offset: 0 }];
  let root: Expr =
    alpha === 1
      ? load(0)
      : {
          kind: 'op',
          op: 'mul',
          args: [{ kind: 'const', index: 0, dtype: 'float32' }, load(0)],
          dtype: 'float32',
        };
  if (bias) {
    inputs.push({ storage: bias.storage, shape, strides: [0, 0, bias.strides[0] ?? 0], offset: bias.offset });
    root = add(root, load(inputs.length - 1));
  }
  if (residual) {
    inputs.push({
      storage: residual.storage,
      shape,
      strides: [...residual.strides],
      offset: residual.offset,
    });
    root = add(root, load(inputs.length - 1));
  }
  // a product the gemm left outside the heap (a TypeScript fallback without the heap allocator) moves in
  const at = rt.storages.adopt(prod);
  if (!ew.evaluateAt({ root, inputs, consts: [Math.fround(alpha)], shape }, at)) {
    throw new Error(`wasm ${op}: the epilogue did not compile`);
  }
}

/**
 * `matmulEpilogue` on the Wasm gemm (`matmul`, whose product lands in the heap), then the
 * epilogue in place by `epilogueInPlace`. Operands that are not float32 run the TypeScript kernel.
 *
 * @example
 * registerKernels('cpu', { matmulEpilogue: wasmMatmulEpilogue(rt, ew, wasmMatmul(rt, exec), tsMatmulEpilogue) });
 */
export function wasmMatmulEpilogue(
  rt: WasmRuntime,
  ew: WasmElementwise,
  matmul: KernelTable['matmul'],
  fallback: KernelTable['matmulEpilogue'],
): KernelTable['matmulEpilogue'] {
  return (a, b, batch, m, k, n, epi) => {
    const { alpha, bias, residual } = epi;
    const views = [a, b, bias, residual];
    if (views.some((v) => v !== null && v.storage.dtype !== 'float32')) {
      return fallback(a, b, batch, m, k, n, epi);
    }
    const prod = matmul(a, b, batch, m, k, n);
    epilogueInPlace(rt, ew, 'matmulEpilogue', prod, [batch, m, n], alpha, bias, residual);
    return prod;
  };
}
