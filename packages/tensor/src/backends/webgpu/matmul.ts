import type { MatmulEpilogue } from '../../backend.js';
import type { Storage, View } from '../../storage.js';
import type { Binding, WebGPUContext } from './context.js';
import { elementwise } from './elementwise.js';
import type { GpuKernel } from './kernel.js';
import {
  type ALayout,
  type BLayout,
  type EpilogueFlags,
  type MatmulConfig,
  matmulShader,
  SPLIT_WG,
  SW,
  SWORDS,
  splitReduceShader,
  type Variant,
  variantKey,
  W,
  WORDS,
} from './matmul-shader.js';
import { bindingOf } from './program.js';

export type { MatmulConfig } from './matmul-shader.js';

/** The tile configurations (name: BM×BN×BK, `r` the register block when not the default). */
export const MATMUL_CONFIGS: Record<string, MatmulConfig> = {
  t128x128x8: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 },
  t128x128x16: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8 },
  t128x64x16: { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 },
  t64x128x16: { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
  t64x64x16: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  t64x64x8r8: { bm: 64, bn: 64, bk: 8, tm: 8, tn: 8 },
  t32x32x16: { bm: 32, bn: 32, bk: 16, tm: 4, tn: 4 },
  t64x128x32: { bm: 64, bn: 128, bk: 32, tm: 4, tn: 8 },
  t128x256x8: { bm: 128, bn: 256, bk: 8, tm: 8, tn: 16 },
  t256x128x8: { bm: 256, bn: 128, bk: 8, tm: 16, tn: 8 },
  t128x128x8r16: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 16 },
  t128x128x16r16: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 16 },
  t128x128x8r16m: { bm: 128, bn: 128, bk: 8, tm: 16, tn: 8 },
  t128x128x16r16m: { bm: 128, bn: 128, bk: 16, tm: 16, tn: 8 },
  t64x128x16r8: { bm: 64, bn: 128, bk: 16, tm: 8, tn: 8 },
  t128x64x16r8: { bm: 128, bn: 64, bk: 16, tm: 8, tn: 8 },
  t64x64x32: { bm: 64, bn: 64, bk: 32, tm: 4, tn: 4 },
  t64x64x32r8: { bm: 64, bn: 64, bk: 32, tm: 8, tn: 8 },
};

/** How one product is run: the tile configuration, the K splits, the tile rows per walk group. */
export interface MatmulPlan {
  config: MatmulConfig;
  splitK: number;
  group: number;
}

/** What `setMatmulConfig` forces (unset fields keep the heuristic's choice). */
interface Forced {
  config: MatmulConfig | null;
  splitK: number | null;
  group: number | null;
}
let forced: Forced = { config: null, splitK: null, group: null };

/**
 * Forces one tile configuration for every matmul (benchmarks and tests), and optionally the number
 * of K splits (1: no split-K) and the tile rows per walk group; null and no options restore the
 * heuristic.
 */
export function setMatmulConfig(
  config: MatmulConfig | string | null,
  options: { splitK?: number; group?: number } = {},
): void {
  let cfg: MatmulConfig | null = null;
  if (typeof config === 'string') {
    const found = MATMUL_CONFIGS[config];
    if (!found)
      throw new Error(
        `setMatmulConfig: unknown config '${config}' (${Object.keys(MATMUL_CONFIGS).join(', ')})`,
      );
    cfg = found;
  } else cfg = config;
  for (const [name, v] of Object.entries(options)) {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1))
      throw new Error(`setMatmulConfig: ${name} must be an integer ≥ 1, got ${v}`);
  }
  forced = { config: cfg, splitK: options.splitK ?? null, group: options.group ?? null };
}

function smemBytes(c: MatmulConfig): number {
  return 2 * c.bk * (c.bm + c.bn) * 4;
}

function tiles(c: MatmulConfig, batch: number, m: number, n: number): number {
  return batch * Math.ceil(m / c.bm) * Math.ceil(n / c.bn);
}

function fits(limits: GPUSupportedLimits, c: MatmulConfig): boolean {
  return (
    smemBytes(c) <= limits.maxComputeWorkgroupStorageSize &&
    (c.bm / c.tm) * (c.bn / c.tn) <= limits.maxComputeInvocationsPerWorkgroup
  );
}

/**
 * Heuristic fitted to the H200 sweep of bench/results/h200-2026-12-02-fused/ (sweep.txt): 128×128
 * tiles of 8×16 per invocation once there are ≥ 1024 of them (4096³: 32.9 TFLOP/s against 29.0 for
 * 64×128), 16×8 when B is read along K (the LM head h·wteᵀ: 36.0 vs 34.0); below that 64×128×16
 * tiles of 8×8 (every GPT-2 projection: 30.6–35.0, against 24–26 for the 128×128 tiles), and the
 * small tiles only for products too small to fill the GPU with those.
 */
export function chooseConfig(
  limits: GPUSupportedLimits,
  batch: number,
  m: number,
  n: number,
  bAlongK = false,
): MatmulConfig {
  if (forced.config && fits(limits, forced.config)) return forced.config;
  const big =
    bAlongK && tiles(MATMUL_CONFIGS.t128x128x8r16, batch, m, n) >= 4096
      ? MATMUL_CONFIGS.t128x128x8r16m
      : MATMUL_CONFIGS.t128x128x8r16;
  if (fits(limits, big) && tiles(big, batch, m, n) >= 1024) return big;
  const mid = MATMUL_CONFIGS.t64x128x16r8;
  if (fits(limits, mid) && tiles(mid, batch, m, n) >= 32) {
    // 128×64 where it pads the output less (bench/results/h200-2026-12-03-final/llama-matmul/:
    // SmolLM2's width 576 = 4.5 × 128 = 9 × 64, its q/o products 17.1 → 22.2 TFLOP/s, k/v (192
    // wide) 17.1 → 18.5); GPT-2's multiples of 128 pad neither, so they keep 64×128
    const tall = MATMUL_CONFIGS.t128x64x16r8;
    const padded = (c: MatmulConfig) => tiles(c, batch, m, n) * c.bm * c.bn;
    return fits(limits, tall) && padded(tall) < padded(mid) ? tall : mid;
  }
  if (tiles(MATMUL_CONFIGS.t64x64x16, batch, m, n) >= 32) return MATMUL_CONFIGS.t64x64x16;
  return MATMUL_CONFIGS.t32x32x16;
}

/** The least K range one split may take (see chooseSplitK). */
const MIN_SPLIT_DEPTH = 192;

/**
 * The K splits (same sweep; the SmolLM2 shapes' sweep agrees: its 1536-deep products on 288 tiles
 * of 128×64, 22.7 → 28.7 TFLOP/s at 3 splits, its LM head's dh, K = 49152, 16.3 → 29.2 at 8):
 * when the output has fewer than 320 tiles (the weight gradients
 * dW = dYᵀ·X with K = 4096 tokens: 27 → 36 TFLOP/s at 4 splits, 768² 17 → 30 at 8) or K is ≥ 8×
 * the larger output dim (the LM head's dh = dlogits·wte, K = 50257: 24 → 27 at 3), enough splits
 * for ≈ 1024 workgroups, each at least 192 deep, at most 8. More tiles gain nothing (2048³: 35.0
 * without, 32.9 with 2). The 192 is SmolLM2's 576-deep q/o products on 288 tiles
 * (bench/results/h200-2026-12-04-s7/run1/splits.txt): 22.3 → 24.6 TFLOP/s forward and 23.3 → 25.0 for
 * d(input) at 3 splits; the floor was 512 before, which left every K < 1024 unsplit.
 */
function chooseSplitK(cfg: MatmulConfig, batch: number, m: number, k: number, n: number): number {
  if (forced.splitK !== null) return forced.splitK;
  const t = tiles(cfg, batch, m, n);
  if (!(t < 320 || k >= 8 * Math.max(m, n))) return 1;
  return Math.max(1, Math.min(8, Math.floor(k / MIN_SPLIT_DEPTH), Math.ceil(1024 / t)));
}

/**
 * The plan of one product (the heuristic, or what `setMatmulConfig` forces). The walk groups 16
 * tile rows (the c_attn forward: 32.2 TFLOP/s, 27.1 with groups of 8; flat elsewhere).
 */
export function planMatmul(
  limits: GPUSupportedLimits,
  batch: number,
  m: number,
  k: number,
  n: number,
  bAlongK = false,
): MatmulPlan {
  const config = chooseConfig(limits, batch, m, n, bAlongK);
  return { config, splitK: chooseSplitK(config, batch, m, k, n), group: forced.group ?? 16 };
}

function aLayout(a: View, batch: number, m: number, k: number): ALayout {
  const [bs, rs, cs] = a.strides;
  const bOk = batch === 1 || bs % 4 === 0;
  const scalar: ALayout = m > 1 && (k === 1 || Math.abs(rs) < Math.abs(cs)) ? 'sm' : 'sk';
  if (a.offset % 4 !== 0 || !bOk) return scalar;
  if (cs === 1 && k % 4 === 0 && (m === 1 || rs % 4 === 0)) return 'k';
  if (rs === 1 && m % 4 === 0 && (k === 1 || cs % 4 === 0)) return 'm';
  return scalar;
}

function bLayout(b: View, batch: number, k: number, n: number): BLayout {
  const [bs, rs, cs] = b.strides;
  const bOk = batch === 1 || bs % 4 === 0;
  const scalar: BLayout = k > 1 && (n === 1 || Math.abs(rs) < Math.abs(cs)) ? 'sk' : 'sn';
  if (b.offset % 4 !== 0 || !bOk) return scalar;
  if (cs === 1 && n % 4 === 0 && (k === 1 || rs % 4 === 0)) return 'n';
  if (rs === 1 && k % 4 === 0 && (n === 1 || cs % 4 === 0)) return 'k';
  return scalar;
}

function epilogueFlags(epi: MatmulEpilogue | null): EpilogueFlags | null {
  if (!epi) return null;
  return { bias: epi.bias !== null, residual: epi.residual !== null };
}

/** Writes the epilogue's words (bias and residual offsets/strides, alpha) into `words`. */
function epilogueWords(
  words: Uint32Array,
  epi: MatmulEpilogue | null,
  at: { OBIAS: number; SBIAS: number; ORES: number; BSR: number; RSR: number; CSR: number; ALPHA: number },
): void {
  const ints = new Int32Array(words.buffer);
  const floats = new Float32Array(words.buffer);
  floats[at.ALPHA] = epi?.alpha ?? 1;
  if (epi?.bias) {
    ints[at.OBIAS] = epi.bias.offset;
    ints[at.SBIAS] = epi.bias.strides[0];
  }
  if (epi?.residual) {
    ints[at.ORES] = epi.residual.offset;
    ints[at.BSR] = epi.residual.strides[0];
    ints[at.RSR] = epi.residual.strides[1];
    ints[at.CSR] = epi.residual.strides[2];
  }
}

function epilogueBindings(epi: MatmulEpilogue | null): Binding[] {
  const out: Binding[] = [];
  if (epi?.bias) out.push(bindingOf(epi.bias.storage));
  if (epi?.residual) out.push(bindingOf(epi.residual.storage));
  return out;
}

/**
 * Records out[b] = alpha·A[b]·B[b] (+ bias + residual) into `out` (a contiguous [batch, m, n] f32
 * storage). With split-K the K slices' partial products go to a scratch buffer and a second kernel
 * sums them in a fixed order and applies the epilogue (deterministic: no float atomics).
 */
export function matmulInto(
  c: WebGPUContext,
  out: Storage,
  a: View,
  b: View,
  batch: number,
  m: number,
  k: number,
  n: number,
  epi: MatmulEpilogue | null = null,
  plan: MatmulPlan | null = null,
): void {
  const bl = bLayout(b, batch, k, n);
  const p = plan ?? planMatmul(c.limits, batch, m, k, n, bl === 'k' || bl === 'sk');
  const cfg = p.config;
  // every split gets a non-empty K range of whole BK slices
  const kChunk = Math.max(cfg.bk, Math.ceil(Math.ceil(k / p.splitK) / cfg.bk) * cfg.bk);
  const splits = Math.max(1, Math.ceil(k / kChunk));
  const split = splits > 1;
  const variant: Variant = {
    cfg,
    a: aLayout(a, batch, m, k),
    b: bl,
    aligned: m % cfg.bm === 0 && n % cfg.bn === 0 && k % cfg.bk === 0 && k > 0,
    cvec: n % 4 === 0,
    split,
    epi: epilogueFlags(epi),
  };
  const pipeline = c.pipeline(variantKey(variant), () => matmulShader(variant));
  const maxDim = c.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.ceil(n / cfg.bn);
  const gy = Math.ceil(m / cfg.bm);
  const total = gx * gy;
  const wx = Math.min(total, maxDim);
  const wy = Math.ceil(total / wx);
  if (wy > maxDim) throw new Error(`webgpu: matmul of ${m}×${n} exceeds the workgroup grid`);
  const size = batch * m * n;
  const scratch = split ? c.scratch('matmul', splits * size) : null;
  const target = scratch ? { buffer: scratch, size: splits * size * 4 } : bindingOf(out);
  const extra = split ? [] : epilogueBindings(epi);
  const perChunk = Math.max(1, Math.floor(maxDim / splits));
  for (let b0 = 0; b0 < batch; b0 += perChunk) {
    const words = new Uint32Array(WORDS);
    const ints = new Int32Array(words.buffer);
    words[W.M] = m;
    words[W.N] = n;
    words[W.K] = k;
    words[W.OA] = a.offset;
    words[W.OB] = b.offset;
    ints[W.BSA] = a.strides[0];
    ints[W.RSA] = a.strides[1];
    ints[W.CSA] = a.strides[2];
    ints[W.BSB] = b.strides[0];
    ints[W.RSB] = b.strides[1];
    ints[W.CSB] = b.strides[2];
    words[W.BATCH0] = b0;
    words[W.GX] = gx;
    words[W.GY] = gy;
    words[W.GROUP] = Math.min(p.group, gy);
    words[W.WX] = wx;
    words[W.KCHUNK] = kChunk;
    words[W.SPLITS] = splits;
    words[W.BATCHES] = batch;
    if (!split) epilogueWords(words, epi, W);
    c.dispatch(
      pipeline,
      words,
      [target, bindingOf(a.storage), bindingOf(b.storage), ...extra],
      [wx, wy, Math.min(perChunk, batch - b0) * splits],
    );
  }
  if (!scratch) return;
  const flags = epilogueFlags(epi);
  const key = `mm-split|${flags ? `${flags.bias ? 'b' : ''}${flags.residual ? 'r' : ''}` : 'plain'}`;
  const reduce = c.pipeline(key, () => splitReduceShader(flags));
  const words = new Uint32Array(SWORDS);
  words[SW.TOTAL] = size;
  words[SW.SPLITS] = splits;
  words[SW.M] = m;
  words[SW.N] = n;
  epilogueWords(words, epi, SW);
  c.dispatch(
    reduce,
    words,
    [bindingOf(out), { buffer: scratch, size: splits * size * 4 }, ...epilogueBindings(epi)],
    c.grid(Math.ceil(size / SPLIT_WG)),
  );
  c.release(scratch);
}

function matmulWith(
  c: WebGPUContext,
  op: string,
  a: View,
  b: View,
  batch: number,
  m: number,
  k: number,
  n: number,
  epi: MatmulEpilogue | null,
): Storage {
  c.check(op);
  if (batch * m * n === 0) return c.allocate(op, 'float32', 0);
  if (k === 0 && !epi) {
    return elementwise(c, {
      root: { kind: 'const', index: 0, dtype: 'float32' },
      inputs: [],
      consts: [0],
      shape: [batch * m * n],
    });
  }
  const out = c.allocate(op, 'float32', batch * m * n);
  matmulInto(c, out, a, b, batch, m, k, n, epi);
  return out;
}

export const matmul: GpuKernel<'matmul'> = (c, a, b, batch, m, k, n) =>
  matmulWith(c, 'matmul', a, b, batch, m, k, n, null);

export const matmulEpilogue: GpuKernel<'matmulEpilogue'> = (c, a, b, batch, m, k, n, epi) =>
  matmulWith(c, 'matmulEpilogue', a, b, batch, m, k, n, epi);
