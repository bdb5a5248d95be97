import { runOp } from '../engine/dispatch.js';
import { tidy } from '../engine/scopes.js';
import type { Tensor } from '../tensor.js';
import { mul, silu } from './elementwise.js';

/**
 * SwiGLU's gate, `silu(gate) · up` (Llama's MLP), recorded as one op. Its forward is one fused
 * elementwise kernel, as the composition already was; one recorded node instead of two saves the
 * two inputs only, and its gradient is two fused kernels (d gate and d up), each written where
 * its consumer (a matmul) reads it. Broadcasts like `mul`.
 *
 * @example
 * lr.swiglu(lr.tensor([0, 1]), lr.tensor([5, 2])); // [0, 1.4621172]  (silu(1) = 0.7310586)
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  return runOp('swiglu', [gate, up], {}, () => tidy(() => mul(silu(gate), up)));
}
