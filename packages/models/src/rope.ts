import { type Device, fromTypedArray, rotateHalf, type Tensor } from '@lowrank/tensor';
import type { RopeParameters } from './llama-config.js';

/**
 * Rotary position embeddings (RoFormer, Su et al. 2021) as Llama uses them: the pair
 * (x_i, x_{i+d/2}) of each head is rotated by the angle p·θ_i at position p, so q·k depends only
 * on the positions' difference. θ_i = θ^(−2i/d), rescaled per the config's RoPE type:
 *
 *   default   θ_i
 *   linear    θ_i / factor                                   (position interpolation)
 *   dynamic   base θ·(factor·L/L₀ − factor + 1)^(d/(d−2)) once the length L passes L₀ (NTK)
 *   llama3    long wavelengths / factor, short kept, a smooth blend between (Llama 3.1)
 *
 * The frequencies are computed in float32 as transformers does, then cos/sin on the host.
 */

/**
 * The d/2 inverse frequencies θ_i for a sequence of `seqLen` tokens (only `dynamic` depends on it).
 *
 * @example
 * inverseFrequencies(4, { ropeType: 'default', theta: 10000, factor: 1, originalMaxPositionEmbeddings: 2048,
 *   lowFreqFactor: 1, highFreqFactor: 1 }, 1); // [1, 0.01]
 */
export function inverseFrequencies(dim: number, rope: RopeParameters, seqLen: number): Float32Array {
  let base = rope.theta;
  if (rope.ropeType === 'dynamic') {
    const L0 = rope.originalMaxPositionEmbeddings;
    const L = Math.max(seqLen, L0);
    base = base * ((rope.factor * L) / L0 - (rope.factor - 1)) ** (dim / (dim - 2));
  }
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / Math.fround(Math.fround(base) ** Math.fround((2 * i) / dim));
  if (rope.ropeType === 'linear') for (let i = 0; i < inv.length; i++) inv[i] = inv[i] / rope.factor;
  if (rope.ropeType === 'llama3') llama3Bands(inv, rope);
  return inv;
}

/** Llama 3.1's scaling, in place: low frequencies / factor, high kept, the middle band blended. */
function llama3Bands(inv: Float32Array, rope: RopeParameters): void {
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: L0 } = rope;
  const lowFreqWavelen = L0 / lo;
  const highFreqWavelen = L0 / hi;
  for (let i = 0; i < inv.length; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowFreqWavelen) inv[i] = inv[i] / factor;
    else if (wavelen >= highFreqWavelen) {
      const smooth = (L0 / wavelen - lo) / (hi - lo);
      inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
    }
  }
}

/**
 * cos and sin [length, dim] of positions start … start+length−1 (each angle repeated for both
 * halves of the head, as HF's `cat((freqs, freqs))`).
 *
 * @example
 * const { cos, sin } = rotaryTables(64, config.rope, 0, 16, 'cpu'); // [16, 64] each
 */
export function rotaryTables(
  dim: number,
  rope: RopeParameters,
  start: number,
  length: number,
  device: Device,
): {
  /** cos(p·θ_i) [length, dim]. */
  cos: Tensor;
  /** sin(p·θ_i) [length, dim]. */
  sin: Tensor;
} {
  const inv = inverseFrequencies(dim, rope, start + length);
  const half = dim / 2;
  const cos = new Float32Array(length * dim);
  const sin = new Float32Array(length * dim);
  for (let t = 0; t < length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround((start + t) * inv[i]);
      const [c, s] = [Math.cos(angle), Math.sin(angle)];
      cos[t * dim + i] = cos[t * dim + half + i] = c;
      sin[t * dim + i] = sin[t * dim + half + i] = s;
    }
  }
  return {
    cos: fromTypedArray(cos, [length, dim], { device }),
    sin: fromTypedArray(sin, [length, dim], { device }),
  };
}

/**
 * x·cos + rotate_half(x)·sin, where rotate_half(x) = [−x₂, x₁] for the halves x₁, x₂ of the last
 * dim: HF's form, in one fused kernel each way. `rotateHalf` reads x through a second view that
 * swaps the halves (a negative stride), so nothing is copied; written with `cat` it took three
 * kernels and a buffer each way (4.2 ms of the SmolLM2-shaped step's 120 on the H200), and as two
 * halves written into their slices of one output, two kernels forward and three backward. x
 * [..., dim] and cos/sin broadcast against it: [T, dim] for x [..., T, dim], [T, 1, dim] for x
 * [B, T, heads, dim].
 *
 * @example
 * const q2 = applyRotary(q, cos.unsqueeze(1), sin.unsqueeze(1)); // q [B, T, n_head, head_dim]
 */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  // computed over [..., 2, dim/2], where the swapped halves are a strided view of every operand,
  // forward and backward (over [..., dim] they are not, and the swap would run on its own first)
  const halves = (t: Tensor) => t.reshape(...t.shape.slice(0, -1), 2, t.shape[t.rank - 1] / 2);
  const x2 = halves(x);
  return x2
    .mul(halves(cos))
    .add(rotateHalf(x2, -2).mul(halves(sin)))
    .reshape(x.shape);
}
