import type { AttentionParams } from '../../backend.js';
import { OpError } from '../../errors.js';
import type { View } from '../../storage.js';
import { s, u } from './wgsl.js';

/**
 * What the attention kernels share: the uniform words (dims, scale, each view's offset and
 * strides) and the WGSL that reads them, and the tile shapes that fit workgroup memory.
 */

/** Uniform word positions. */
export const W = {
  b: 0,
  h: 1,
  hkv: 2,
  l: 3,
  s: 4,
  group: 5,
  scale: 6,
  q: 8,
  k: 13,
  v: 18,
  mask: 23,
  out: 28,
  grad: 33,
  lse: 38,
  words: 44,
} as const;

/** The largest head dim the kernels take (the q tile and the accumulators grow with it). */
export const MAX_HEAD_DIM = 256;

/** Fills the uniform words of the attention views (absent ones stay 0). */
export function attentionWords(
  q: View,
  k: View,
  v: View,
  mask: View | null,
  p: AttentionParams,
  extra: { out?: View; grad?: View; lse?: View } = {},
): Uint32Array {
  const words = new Uint32Array(W.words);
  const ints = new Int32Array(words.buffer);
  const floats = new Float32Array(words.buffer);
  const [b, h, l] = q.shape;
  words[W.b] = b;
  words[W.h] = h;
  words[W.hkv] = k.shape[1];
  words[W.l] = l;
  words[W.s] = k.shape[2];
  words[W.group] = h / k.shape[1];
  floats[W.scale] = p.scale;
  const put = (at: number, view: View | null | undefined, rank: number) => {
    if (!view) return;
    for (let i = 0; i < rank; i++) ints[at + i] = view.strides[i];
    ints[at + 4] = view.offset;
  };
  put(W.q, q, 4);
  put(W.k, k, 4);
  put(W.v, v, 4);
  put(W.mask, mask, 4);
  put(W.out, extra.out, 4);
  put(W.grad, extra.grad, 4);
  if (extra.lse) {
    for (let i = 0; i < 3; i++) ints[W.lse + i] = extra.lse.strides[i];
    ints[W.lse + 4] = extra.lse.offset;
  }
  return words;
}

/** WGSL: `let <name>_base = …` (element [b, h, 0, 0]) and `<name>_r`, `<name>_d` strides (i32). */
export function viewBase(name: string, at: number, b: string, h: string): string {
  return `let ${name}_base = ${s(at + 4)} + i32(${b}) * ${s(at)} + i32(${h}) * ${s(at + 1)};
  let ${name}_r = ${s(at + 2)};
  let ${name}_d = ${s(at + 3)};`;
}

/** WGSL reading dims and the scale into `B, H, L, S, G, scale`. */
export const DIMS = `let L = ${u(W.l)};
  let S = ${u(W.s)};
  let H = ${u(W.h)};
  let G = ${u(W.group)};
  let scale = bitcast<f32>(${u(W.scale)});`;

/**
 * WGSL of the masking of one score `x` at (query `row`, key `col`): `hard` where the key is out of
 * range, in the causal future or bool-masked (the composed graph's `where`, whose gradient there
 * is 0), `ok` where the score counts (not hard, not a float mask of −∞); adds a float mask to x.
 */
export function maskScore(mask: 'bool' | 'float' | null, causal: boolean): string {
  const lines = ['var hard = !(col < S && row < L);', 'var ok = true;'];
  if (causal) lines.push('hard = hard || col > row;');
  if (mask) {
    lines.push(
      'let mi = clamp(mask_base + i32(row) * mask_r + i32(col) * mask_d, 0, i32(arrayLength(&mask)) - 1);',
    );
    if (mask === 'bool') lines.push('hard = hard || mask[mi] == 0u;');
    else lines.push('let mv = mask[mi];', 'ok = bitcast<u32>(mv) != 0xff800000u;', 'x += mv;');
  }
  lines.push('ok = ok && !hard;');
  return lines.join('\n        ');
}

/** The WGSL declaration of the mask binding, or '' without a mask. */
export function maskBinding(mask: 'bool' | 'float' | null, binding: number): string {
  if (!mask) return '';
  return `@group(0) @binding(${binding}) var<storage, read> mask: array<${mask === 'bool' ? 'u32' : 'f32'}>;`;
}

export function maskKind(mask: View | null): 'bool' | 'float' | null {
  return mask ? (mask.storage.dtype === 'bool' ? 'bool' : 'float') : null;
}

export function checkHeadDims(op: string, e: number, ev: number): void {
  if (e > MAX_HEAD_DIM || ev > MAX_HEAD_DIM) {
    throw new OpError(op, `head dims up to ${MAX_HEAD_DIM} are supported on WebGPU, got E=${e}, Ev=${ev}`);
  }
}

/** Rounds a head dim up to a multiple of `m` (the columns each thread of a row owns). */
export function padTo(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}
