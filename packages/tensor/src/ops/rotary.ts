import { runOp } from '../engine/dispatch.js';
import { lazyStorage } from '../engine/lazy.js';
import { tidy } from '../engine/scopes.js';
import { fmtShape, OpError } from '../errors.js';
import { loadOf, opOf } from '../expr/build.js';
import type { ElementwiseProgram } from '../expr/program.js';
import { normalizeDim } from '../shape.js';
import type { View } from '../storage.js';
import type { Tensor } from '../tensor.js';
import { fromTypedArray } from './creation.js';
import { lazyViewAs, wrap } from './util.js';
import { reshape } from './views.js';

/**
 * rotate_half of rotary position embeddings (RoFormer, Su et al. 2021; HF's `rotate_half`):
 * [−x₂, x₁] for the halves x₁, x₂ of `dim` (default the last). It is a lazy elementwise program,
 * not a copy: it reads x through a second view whose negative stride swaps the two halves, times
 * a sign per half, so `x·cos + rotateHalf(x)·sin` is one fused kernel (as `cat([x₂.neg(), x₁])`
 * it was three kernels and a buffer). A fused consumer must iterate over the split halves to take
 * it in: over [..., 2, d/2] (rotate `dim` −2 of that view) the swap is a strided view of every
 * operand, over [..., d] it is not, and the rotation is computed on its own first. Its gradient is
 * −rotateHalf(g). float32; `dim` of even size.
 *
 * @example
 * lr.rotateHalf(lr.tensor([1, 2, 3, 4])); // [-3, -4, 1, 2]
 * lr.rotateHalf(lr.tensor([[1, 2], [3, 4]]), 0); // [[-3, -4], [1, 2]]
 */
export function rotateHalf(x: Tensor, dim = -1): Tensor {
  x.assertLive('rotateHalf');
  if (x.rank === 0) throw new OpError('rotateHalf', 'expected a tensor of rank ≥ 1, got a scalar');
  const d = normalizeDim('rotateHalf', dim, x.rank);
  const size = x.shape[d];
  if (size % 2 !== 0)
    throw new OpError('rotateHalf', `dim ${d} must have an even size, got shape ${fmtShape(x.shape)}`);
  if (x.dtype !== 'float32') throw new OpError('rotateHalf', `expected a float32 tensor, got ${x.dtype}`);
  return runOp('rotateHalf', [x], { dim: d }, () =>
    tidy(() => {
      const half = size / 2;
      const before = x.shape.slice(0, d);
      const after = x.shape.slice(d + 1);
      const shape = [...before, 2, half, ...after];
      const step = x.strides[d];
      // element (…, j, i, …) reads x at (…, (1 − j)·half + i, …): start at the second half, step back
      const partner: View = {
        storage: x.storage,
        shape,
        strides: [...x.strides.slice(0, d), -half * step, step, ...x.strides.slice(d + 1)],
        offset: x.offset + half * step,
      };
      const signs = fromTypedArray(new Float32Array([-1, 1]), [2], { device: x.device });
      const signStrides = shape.map((_, e) => (e === d ? 1 : 0));
      const program: ElementwiseProgram = {
        root: opOf('mul', loadOf(0), loadOf(1)),
        inputs: [partner, lazyViewAs(signs, shape, signStrides)],
        consts: [],
        shape,
      };
      return reshape(wrap(lazyStorage('rotateHalf', x.device, program), shape), x.shape);
    }),
  );
}
