import type { AttentionParams } from '../../backend.js';
import { OpError } from '../../errors.js';
import { ATTENTION_STREAM } from '../../philox.js';
import type { View } from '../../storage.js';
import type { WebGPUContext } from './context.js';
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
  /** Dropout: key0, key1, threshold, scale (f32). */
  drop: 44,
  words: 49,
} as const;

/**
 * Which attention kernels run: the defaults are the fastest measured on the H200; the others stay
 * for A/B benches (bench/attention-gpu.ts `--dq`, `--gqa`, `--subgroups`) and for tests of both paths.
 */
export interface AttentionKernels {
  /** dq folded into the dk/dv pass with atomic adds ('fused'), or its own kernel that recomputes p and ds ('kernel'). */
  dq: 'fused' | 'kernel';
  /** GQA dk/dv: a workgroup per query head adding into its kv head atomically ('split'), or per kv head looping over the group ('loop'). */
  gqa: 'split' | 'loop';
  /** Subgroup operations where the device has the `subgroups` feature ('auto'), or never ('off'). */
  subgroups: 'auto' | 'off';
  /** The backward's ds tile: its own workgroup array beside p's where it fits ('own': 2 barriers a step fewer), or p's ('shared'). */
  dsTile: 'own' | 'shared';
  /** Index of the first candidate tile tried by the forward (0: the fastest measured that fits). */
  forwardTile: number;
  /** Same for the backward. */
  backwardTile: number;
  /** A forward tile outside the candidates, `BRxBCxTYxTX` (e.g. '64x32x8x8'), or '' for none. */
  forwardShape: string;
  /** Same for the backward. */
  backwardShape: string;
}

// measured on the H200 (docs/perf.md, session 6): the fused dq's atomic adds cost more than the
// dq kernel they replace (dk/dv 0.52 → 0.92 ms against dq's 0.39–0.46 at T = 512), and splitting
// GQA heads over workgroups gained nothing (0.85 ms either way at T = 512, 2.88 vs 2.62 at 1024)
const kernels: AttentionKernels = {
  dq: 'kernel',
  gqa: 'loop',
  subgroups: 'auto',
  dsTile: 'own',
  forwardTile: 0,
  backwardTile: 0,
  forwardShape: '',
  backwardShape: '',
};

/** The attention kernels in use (a copy). */
export function attentionKernels(): AttentionKernels {
  return { ...kernels };
}

/**
 * Chooses attention kernels (pipelines are keyed by the choice, so switching recompiles nothing
 * already built); returns the previous choice.
 * @example
 * const before = setAttentionKernels({ dq: 'kernel' }); // the separate dq kernel, for an A/B
 * setAttentionKernels(before);
 */
export function setAttentionKernels(choice: Partial<AttentionKernels>): AttentionKernels {
  const before = attentionKernels();
  Object.assign(kernels, choice);
  return before;
}

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
  if (p.dropout) {
    words[W.drop] = p.dropout.key.key0;
    words[W.drop + 1] = p.dropout.key.key1;
    words[W.drop + 2] = p.dropout.threshold;
    floats[W.drop + 3] = p.dropout.scale;
  }
  return words;
}

/** u32 words of keep bits per row of a dropout block of `cols` key columns. */
const keepWords = (cols: number) => Math.ceil(cols / 32);

/** Workgroup bytes of the keep bits of a block of `rows` query rows × `cols` key columns. */
export function keepBytes(rows: number, cols: number): number {
  return 4 * rows * keepWords(cols);
}

/** WGSL declaring the keep bits of a dropout block (`rows` query rows × `cols` key columns). */
export function keepDecl(rows: number, cols: number): string {
  return `var<workgroup> Keep: array<u32, ${rows * keepWords(cols)}>;`;
}

/**
 * WGSL filling the keep bits of the block of query rows `r0` + [0, rows) × key columns `c0` +
 * [0, cols) of batch-head `bh` (c0 a multiple of 4): the threads share the Philox calls, one per
 * four columns (its four words, `attentionKeep`'s), so a thread computes a few instead of one per
 * score it owns, and the kernel has one call site (lavapipe compiled the per-score calls of the
 * backward for minutes). Run between the barriers around a block's tile loads.
 */
export function keepFill(rows: number, cols: number, bh: string, r0: string, c0: string, nt: number): string {
  const words = keepWords(cols);
  const key = `vec2<u32>(${u(W.drop)}, ${u(W.drop + 1)})`;
  return `for (var idx = lid; idx < ${rows * words}u; idx += ${nt}u) {
      let kr = idx / ${words}u;
      let kc = (idx % ${words}u) * 32u;
      var bits = 0u;
      for (var c = 0u; c < ${Math.min(32, cols)}u; c += 4u) {
        let w = philox4x32(vec4<u32>((${c0} + kc + c) >> 2u, ${r0} + kr, ${bh}, ${ATTENTION_STREAM >>> 0}u), ${key}) >> vec4<u32>(8u);
        let t = ${u(W.drop + 2)};
        bits |= (select(0u, 1u, w.x >= t) | select(0u, 2u, w.y >= t) | select(0u, 4u, w.z >= t) | select(0u, 8u, w.w >= t)) << c;
      }
      Keep[idx] = bits;
    }`;
}

/**
 * WGSL of the dropout factor of the block's query row `r` and key column `c` (indices within
 * the block of `cols` columns whose keep bits `keepFill` wrote): 1/(1 − p) when kept, else 0.
 */
export function keepFactor(cols: number, r: string, c: string): string {
  const words = keepWords(cols);
  const word = words === 1 ? `Keep[${r}]` : `Keep[(${r}) * ${words}u + (${c}) / 32u]`;
  return `select(0.0, bitcast<f32>(${u(W.drop + 3)}), ((${word} >> ((${c}) % 32u)) & 1u) == 1u)`;
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

/** A register-tiled attention kernel's blocking (see attention-backward.ts). */
export interface Tile {
  /** stationary rows per workgroup */
  br: number;
  /** streamed rows per step */
  bc: number;
  /** threads along the stationary rows */
  ty: number;
  /** threads along the streamed rows (and the accumulators' column groups) */
  tx: number;
}

/**
 * The first of `tiles` (fastest first) whose workgroup memory, `bytes(t)`, fits the device, else
 * the last. On SwiftShader (headless Chromium's software WebGPU) a thread holds at most 4 scores
 * (2 × 2): its compiler takes minutes over the larger register tiles, and the page's device was
 * lost ("A valid external Instance reference no longer exists") while it compiled. Measured in
 * Chromium 156 on 2 loaded cores, each pipeline alone in a bare page, head dim 16, causal:
 * forward 4 × 4 (64 × 32 block) failed with that loss after 183 s, 4 × 2 (64 × 16) 3.2 s, 2 × 2
 * (32 × 16) 1.3 s; backward dk/dv 4 × 2 (64 × 16) 101 s, 2 × 2 (32 × 16) 2.1 s, dq 2 × 2 2.1 s.
 * Its 32 KiB of workgroup memory is no guide (lavapipe has as much and its attention tests run the
 * 4 × 4 tile at head dim 16; the H200 has 48 KiB), so the adapter is told by name; lavapipe and
 * hardware GPUs keep every tile.
 */
export function chooseTile(c: WebGPUContext, tiles: readonly Tile[], bytes: (t: Tile) => number): Tile {
  const info = c.adapterInfo;
  const swiftShader =
    info !== undefined && /swiftshader/i.test(`${info.architecture} ${info.device} ${info.description}`);
  const maxScores = swiftShader ? 4 : Number.POSITIVE_INFINITY;
  const limit = c.limits.maxComputeWorkgroupStorageSize;
  const fits = (t: Tile) => bytes(t) <= limit && (t.br / t.ty) * (t.bc / t.tx) <= maxScores;
  return tiles.find(fits) ?? tiles[tiles.length - 1];
}

/**
 * The tile a kernel runs: `shape` (`BRxBCxTYxTX`) when given, else the first of `tiles` from
 * index `first` that fits (chooseTile). A given shape must divide evenly and fit.
 */
export function pickTile(
  c: WebGPUContext,
  tiles: readonly Tile[],
  first: number,
  shape: string,
  bytes: (t: Tile) => number,
): Tile {
  if (!shape) return chooseTile(c, tiles.slice(first), bytes);
  const [br, bc, ty, tx] = shape.split('x').map(Number);
  const t = { br, bc, ty, tx };
  const limit = c.limits.maxComputeWorkgroupStorageSize;
  if (!(br % ty === 0 && bc % tx === 0 && bc % 4 === 0 && bytes(t) <= limit)) {
    throw new Error(
      `attention tile: expected BRxBCxTYxTX with TY | BR, TX | BC, 4 | BC and ≤ ${limit} bytes, got '${shape}' (${bytes(t)} bytes)`,
    );
  }
  return t;
}

/**
 * Whether a kernel whose rows are TX consecutive invocations (lid = ty·TX + tx, TX a power of 2)
 * reduces each row with subgroup shuffles instead of workgroup memory and a barrier: the device has
 * `subgroups` (requested when the adapter has it), its smallest subgroup holds a row, and the choice
 * is not 'off'. It takes consecutive local invocation indices to be consecutive lanes, as Vulkan
 * drivers lay out 1-D workgroups (lavapipe: 8 lanes, the tests; the H200: 32, the bench's check).
 */
export function rowSubgroups(c: WebGPUContext, t: Tile): boolean {
  if (kernels.subgroups === 'off' || !c.features.has('subgroups')) return false;
  return (c.adapterInfo?.subgroupMinSize ?? 0) >= t.tx;
}

/** vec4 per row of a tile in workgroup memory: enough for `n` floats, odd (bank spread). */
export const rowVec4 = (n: number) => Math.ceil(n / 4) | 1;

/**
 * WGSL of the p / ds tile: scalar stores (a thread writes single elements of a row) and vec4
 * reads through psRow. Ps is f32, not vec4, so no thread stores one component of a shared vec4
 * (which a compiler may lower to a read-modify-write of the whole vector, racing three others).
 */
export function psDecl(t: Tile, name = 'Ps'): string {
  return `var<workgroup> ${name}: array<f32, ${4 * t.br * rowVec4(t.bc)}>;
fn ${name.toLowerCase()}Row(o: u32) -> vec4<f32> { return vec4<f32>(${name}[o], ${name}[o + 1u], ${name}[o + 2u], ${name}[o + 3u]); }`;
}

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);
export const each = (n: number, f: (i: number) => string, sep = '\n') => range(n).map(f).join(sep);

/**
 * WGSL loading rows [r0, r0 + n) of view `src` (dim floats a row) into `dst` as vec4, `vs` vec4 a
 * row; zeros past `limit` and past `dim` (the padding the dot products read).
 */
export function loadRows(
  dst: string,
  src: string,
  n: number,
  dim: number,
  r0: string,
  limit: string,
  nt: number,
): string {
  const d4 = Math.ceil(dim / 4);
  const comp = (i: number) =>
    `${i === 0 || 4 * d4 === dim ? '' : `if (d + ${i}u < ${dim}u) `}{ x[${i}] = ${src}[at + i32(d + ${i}u) * ${src}_d]; }`;
  return `for (var idx = lid; idx < ${n * d4}u; idx += ${nt}u) {
      let r = idx / ${d4}u;
      let d = (idx % ${d4}u) * 4u;
      var x = vec4<f32>(0.0);
      if (${r0} + r < ${limit}) {
        let at = ${src}_base + i32(${r0} + r) * ${src}_r;
        ${each(4, comp, '\n        ')}
      }
      ${dst}[r * ${rowVec4(dim)}u + d / 4u] = x;
    }`;
}

/** WGSL: sc[i·CT + j] += a_i · c_j over the head dim (a: stationary tile, c: streamed tile). */
export function scores(acc: string, a: string, c: string, dim: number, t: Tile): string {
  const rt = t.br / t.ty;
  const ct = t.bc / t.tx;
  const vs = rowVec4(dim);
  return `for (var d = 0u; d < ${Math.ceil(dim / 4)}u; d++) {
      ${each(rt, (i) => `let a${i} = ${a}[(ty + ${t.ty * i}u) * ${vs}u + d];`, '\n      ')}
      ${each(ct, (j) => `let c${j} = ${c}[(tx + ${t.tx * j}u) * ${vs}u + d];`, '\n      ')}
      ${each(rt * ct, (n) => `${acc}[${n}] += dot(a${Math.floor(n / ct)}, c${n % ct});`, '\n      ')}
    }`;
}

/** WGSL: acc[i·CC + c] += Σ_j Ps[row i][j] · src[j][column group c] over the BC streamed rows. */
export function accumulate(acc: string, src: string, dim: number, t: Tile, ps = 'Ps'): string {
  const rt = t.br / t.ty;
  const groups = Math.ceil(dim / 4);
  const cc = Math.ceil(groups / t.tx);
  const vs = rowVec4(dim);
  const vp = rowVec4(t.bc);
  const col = (c: number) =>
    (c + 1) * t.tx <= groups ? `tx + ${t.tx * c}u` : `min(tx + ${t.tx * c}u, ${groups - 1}u)`;
  return `for (var j4 = 0u; j4 < ${t.bc / 4}u; j4++) {
      ${each(rt, (i) => `let p${i} = ${ps.toLowerCase()}Row((ty + ${t.ty * i}u) * ${4 * vp}u + j4 * 4u);`, '\n      ')}
      ${each(
        4,
        (
          w,
        ) => `${each(cc, (c) => `let g${w}_${c} = ${src}[(j4 * 4u + ${w}u) * ${vs}u + ${col(c)}];`, '\n      ')}
      ${each(rt * cc, (n) => `${acc}[${n}] += p${Math.floor(n / cc)}[${w}] * g${w}_${n % cc};`, '\n      ')}`,
        '\n      ',
      )}
    }`;
}

/** WGSL storing a register tile (sc or dp) into Ps[row ty + TY·i][col tx + TX·j]. */
export function toPs(acc: string, t: Tile, ps = 'Ps'): string {
  const rt = t.br / t.ty;
  const ct = t.bc / t.tx;
  const vp = rowVec4(t.bc);
  return each(
    rt * ct,
    (n) => {
      const i = Math.floor(n / ct);
      const j = n % ct;
      return `{ let c = tx + ${t.tx * j}u; ${ps}[(ty + ${t.ty * i}u) * ${4 * vp}u + c] = ${acc}[${n}]; }`;
    },
    '\n    ',
  );
}
