/**
 * The matmul shapes of issue 14: square 1024³–4096³ and every product of a GPT-2 124M training step
 * at batch 8 × 512 (M = 4096 tokens, C = 768, V = 50257) with F.linear's layouts:
 *   nt  forward x·Wᵀ (W stored [out, in], read through its strides), incl. the tied LM head h·wteᵀ
 *   nn  input gradients dX = dY·W, incl. the LM head's dh = dlogits·wte
 *   tn  weight gradients dW = dYᵀ·X (K = 4096 tokens), incl. dwte = dlogitsᵀ·h
 * bench/matmul_torch.py lists the same shapes.
 */
import type * as lr from '@lowrank/tensor';

export type Layout = 'nn' | 'nt' | 'tn';

export interface Shape {
  name: string;
  m: number;
  k: number;
  n: number;
  layout: Layout;
}

const T = 4096;
const C = 768;
const V = 50257;

export const SHAPES: Shape[] = [
  { name: 'sq1024', m: 1024, k: 1024, n: 1024, layout: 'nn' },
  { name: 'sq2048', m: 2048, k: 2048, n: 2048, layout: 'nn' },
  { name: 'sq4096', m: 4096, k: 4096, n: 4096, layout: 'nn' },
  { name: 'fwd.c_attn', m: T, k: C, n: 3 * C, layout: 'nt' },
  { name: 'fwd.attn_proj', m: T, k: C, n: C, layout: 'nt' },
  { name: 'fwd.c_fc', m: T, k: C, n: 4 * C, layout: 'nt' },
  { name: 'fwd.mlp_proj', m: T, k: 4 * C, n: C, layout: 'nt' },
  { name: 'fwd.lm_head', m: T, k: C, n: V, layout: 'nt' },
  { name: 'dX.c_attn', m: T, k: 3 * C, n: C, layout: 'nn' },
  { name: 'dX.attn_proj', m: T, k: C, n: C, layout: 'nn' },
  { name: 'dX.c_fc', m: T, k: 4 * C, n: C, layout: 'nn' },
  { name: 'dX.mlp_proj', m: T, k: C, n: 4 * C, layout: 'nn' },
  { name: 'dX.lm_head', m: T, k: V, n: C, layout: 'nn' },
  { name: 'dW.c_attn', m: 3 * C, k: T, n: C, layout: 'tn' },
  { name: 'dW.attn_proj', m: C, k: T, n: C, layout: 'tn' },
  { name: 'dW.c_fc', m: 4 * C, k: T, n: C, layout: 'tn' },
  { name: 'dW.mlp_proj', m: C, k: T, n: 4 * C, layout: 'tn' },
  { name: 'dW.wte', m: V, k: T, n: C, layout: 'tn' },
];

/**
 * The frozen-base products of a SmolLM2-135M-shaped Llama step at batch 8 × 512 (hidden 576, 3 kv
 * heads of 64 = 192, intermediate 1536, vocab 49152 in chunks of 1024 rows), issue 17's target:
 * forward x·Wᵀ and d(input) dY·W only (the base is frozen: no dW).
 */
const LC = 576;
const LKV = 192;
const LFF = 1536;
const LV = 49152;
export const LLAMA_SHAPES: Shape[] = [
  { name: 'llama.fwd.q', m: T, k: LC, n: LC, layout: 'nt' },
  { name: 'llama.fwd.kv', m: T, k: LC, n: LKV, layout: 'nt' },
  { name: 'llama.fwd.up', m: T, k: LC, n: LFF, layout: 'nt' },
  { name: 'llama.fwd.down', m: T, k: LFF, n: LC, layout: 'nt' },
  { name: 'llama.fwd.lm_head', m: 1024, k: LC, n: LV, layout: 'nt' },
  { name: 'llama.dX.q', m: T, k: LC, n: LC, layout: 'nn' },
  { name: 'llama.dX.kv', m: T, k: LKV, n: LC, layout: 'nn' },
  { name: 'llama.dX.up', m: T, k: LFF, n: LC, layout: 'nn' },
  { name: 'llama.dX.down', m: T, k: LC, n: LFF, layout: 'nn' },
  { name: 'llama.dX.lm_head', m: 1024, k: LV, n: LC, layout: 'nn' },
];

/**
 * The same model's products if the projections that share an input ran as one (q, k and v:
 * 576 + 2·192 = 960 outputs; gate and up: 2·1536), forward and d(input): what one grouped
 * dispatch would cost against the separate products of LLAMA_SHAPES.
 */
export const LLAMA_GROUPED_SHAPES: Shape[] = [
  { name: 'llama.fwd.qkv', m: T, k: LC, n: LC + 2 * LKV, layout: 'nt' },
  { name: 'llama.fwd.gateup', m: T, k: LC, n: 2 * LFF, layout: 'nt' },
  { name: 'llama.dX.qkv', m: T, k: LC + 2 * LKV, n: LC, layout: 'nn' },
  { name: 'llama.dX.gateup', m: T, k: 2 * LFF, n: LC, layout: 'nn' },
];

/**
 * GPT-2's LM-head products as a training step runs them: linearCrossEntropy's chunks of 1,024 of
 * the 4,096 rows on WebGPU (logits h·wteᵀ and dh = dlogits·wte).
 */
export const CHUNK_SHAPES: Shape[] = [
  { name: 'chunk.fwd.lm_head', m: 1024, k: C, n: V, layout: 'nt' },
  { name: 'chunk.dX.lm_head', m: 1024, k: V, n: C, layout: 'nn' },
];

/** The operands of a shape on the device: A [m, k] and B [k, n], as views where the layout says. */
export function operands(L: typeof lr, s: Shape): { a: lr.Tensor; b: lr.Tensor; dispose: () => void } {
  const base = [
    L.randn(s.layout === 'tn' ? [s.k, s.m] : [s.m, s.k], { device: 'webgpu' }),
    L.randn(s.layout === 'nt' ? [s.n, s.k] : [s.k, s.n], { device: 'webgpu' }),
  ];
  const a = s.layout === 'tn' ? base[0].T : base[0];
  const b = s.layout === 'nt' ? base[1].T : base[1];
  return { a, b, dispose: () => L.dispose(...base) };
}
