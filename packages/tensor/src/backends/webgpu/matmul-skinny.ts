import { Storage, type View } from '../../storage.js';
import { INDEX_OPS, type WebGPUContext } from './context.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { metaStruct, u } from './wgsl.js';

/**
 * Matmuls where one of M, N, K is at most 64: LoRA's shrink x·Aᵀ ([M, K]×[K, r]), expand h·Bᵀ
 * ([M, r]×[r, N]) and their gradients (dh = dY·B, dAᵀ = xᵀ·dh, dBᵀ = hᵀ·dY, dx = dh·A). The
 * general kernel's 128×128 tiles waste most of a tile on an r-wide output and leave a K = 4096
 * reduction to a few dozen workgroups. Here:
 *  - skinny output (N ≤ 64): a workgroup owns 64 rows × all N columns (N rounded up to a power of
 *    two ≥ 4), so a row of A is read once; M ≤ 64 is the same kernel on Cᵀ = Bᵀ·Aᵀ (operands and
 *    output read and written through swapped strides, never copied);
 *  - split-K when there are too few tiles for the GPU (K = 4096 reductions to [768, r]): each
 *    K chunk writes its partial block to a scratch buffer and a second kernel sums the chunks in
 *    order (deterministic: no float atomics);
 *  - N ≤ 16 with contiguous rows of A (shrink, dh at r ≤ 16): a row kernel, 32 invocations per
 *    row striding over K (`rowdotShader`);
 *  - tiny inner dim (K ≤ 64, `loraMatmul`'s fused expand): 64×64 tiles.
 * Which matmuls come here at all is `takes` (fitted to an H200 sweep).
 * Operand loads are mapped so that neighbouring invocations read along whichever dim is
 * contiguous. The same generator serves `loraMatmul`: out = residual + α·a·w[index[b]], the
 * fused "scaled and added into the base output" expand and the per-sample-adapter (BGMV) gather.
 */

interface Tile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
}

interface Variant {
  tile: Tile;
  /** A's k dim is contiguous (else its m dim is, or neither). */
  aRow: boolean;
  /** B's n dim is contiguous. */
  bRow: boolean;
  /** Batch offsets of A / B come from the index buffer. */
  gatherA: boolean;
  gatherB: boolean;
  /** A residual view is added in the epilogue (unsplit only; the split reduction adds it otherwise). */
  residual: boolean;
  /** Partial blocks go to slab `split` of the output (binding 1 is the scratch buffer). */
  split: boolean;
}

// meta words of the tile kernel
const W = {
  M: 0,
  N: 1,
  K: 2,
  KCH: 3, // K per split chunk (a multiple of bk)
  S: 4, // split chunks
  OA: 5,
  BSA: 6,
  RSA: 7,
  CSA: 8,
  OB: 9,
  BSB: 10,
  RSB: 11,
  CSB: 12,
  OBS: 13, // output batch stride
  ORS: 14,
  OCS: 15,
  OR: 16, // residual offset and strides
  RBS: 17,
  RRS: 18,
  RCS: 19,
  ALPHA: 20, // f32 bits
  PART: 21, // elements per partial slab
  BATCH0: 22,
  SLOTS: 23, // stack size the index points into
  IOFF: 24, // index offset and stride
  ISTR: 25,
} as const;
const WORDS = 26;

const si = (w: number) => `bitcast<i32>(${u(w)})`;

const INDEX_CHECK = /* wgsl */ `
fn slot_of(b: u32) -> i32 {
  let v = ix[${si(W.IOFF)} + i32(b) * ${si(W.ISTR)}];
  let n = i32(${u(W.SLOTS)});
  if (v < 0 || v >= n) {
    if (atomicAdd(&err[0], 1u) == 0u) {
      atomicStore(&err[1], ${INDEX_OPS.indexOf('loraMatmul') + 1}u);
      atomicStore(&err[2], bitcast<u32>(v));
      atomicStore(&err[3], u32(n));
    }
    return 0;
  }
  return v;
}`;

/** WGSL of one tile variant. */
export function skinnyShader(v: Variant): string {
  const { bm, bn, bk, tm, tn } = v.tile;
  const ntx = bn / tn;
  const nty = bm / tm;
  const T = ntx * nty;
  const L: string[] = [];
  const emit = (s: string) => L.push(s);
  const gather = v.gatherA || v.gatherB;
  emit(metaStruct(WORDS));
  emit('@group(0) @binding(1) var<storage, read_write> C: array<f32>;');
  emit('@group(0) @binding(2) var<storage, read> A: array<f32>;');
  emit('@group(0) @binding(3) var<storage, read> B: array<f32>;');
  let slot = 4;
  if (v.residual) emit(`@group(0) @binding(${slot++}) var<storage, read> R: array<f32>;`);
  if (gather) {
    emit(`@group(0) @binding(${slot++}) var<storage, read> ix: array<i32>;`);
    emit(`@group(0) @binding(${slot++}) var<storage, read_write> err: array<atomic<u32>, 4>;`);
    emit(INDEX_CHECK);
  }
  emit(`var<workgroup> As: array<f32, ${bk * bm}>;`);
  emit(`var<workgroup> Bs: array<f32, ${bk * bn}>;`);
  emit(`@compute @workgroup_size(${T})`);
  emit('fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {');
  emit(`  let M = ${u(W.M)}; let N = ${u(W.N)}; let K = ${u(W.K)};`);
  emit(`  let rsa = ${si(W.RSA)}; let csa = ${si(W.CSA)}; let rsb = ${si(W.RSB)}; let csb = ${si(W.CSB)};`);
  emit(`  let S = ${u(W.S)};`);
  emit(`  let batch = wid.z / S + ${u(W.BATCH0)}; let part = wid.z % S;`);
  emit(`  let kBeg = part * ${u(W.KCH)}; let kEnd = min(K, kBeg + ${u(W.KCH)});`);
  const off = (g: boolean) => (g ? 'slot_of(batch)' : 'i32(batch)');
  emit(`  let aBase = ${si(W.OA)} + ${off(v.gatherA)} * ${si(W.BSA)};`);
  emit(`  let bBase = ${si(W.OB)} + ${off(v.gatherB)} * ${si(W.BSB)};`);
  emit(`  let m0 = wid.y * ${bm}u; let n0 = wid.x * ${bn}u;`);
  emit(`  let tx = tid % ${ntx}u; let ty = tid / ${ntx}u;`);
  for (let a = 0; a < tm; a++) for (let b = 0; b < tn; b++) emit(`  var c${a}_${b} = 0.0;`);
  emit(`  for (var k0 = kBeg; k0 < kEnd; k0 += ${bk}u) {`);
  // A tile [bm × bk] → As[k·bm + m]; B tile [bk × bn] → Bs[k·bn + n]
  const loads = (units: number, body: (uu: string) => string) => {
    for (let r = 0; r < Math.ceil(units / T); r++) {
      const uu = `(tid + ${r * T}u)`;
      const guard = units % T === 0 || (r + 1) * T <= units ? '' : `if (${uu} < ${units}u) `;
      emit(`    ${guard}{ ${body(uu)} }`);
    }
  };
  loads(bm * bk, (uu) => {
    const [mm, kk] = v.aRow ? [`${uu} / ${bk}u`, `${uu} % ${bk}u`] : [`${uu} % ${bm}u`, `${uu} / ${bm}u`];
    return `let mm = ${mm}; let kk = ${kk}; let gm = m0 + mm; let gk = k0 + kk; var x = 0.0; if (gm < M && gk < kEnd) { x = A[aBase + i32(gm) * rsa + i32(gk) * csa]; } As[kk * ${bm}u + mm] = x;`;
  });
  loads(bn * bk, (uu) => {
    const [nn, kk] = v.bRow ? [`${uu} % ${bn}u`, `${uu} / ${bn}u`] : [`${uu} / ${bk}u`, `${uu} % ${bk}u`];
    return `let nn = ${nn}; let kk = ${kk}; let gn = n0 + nn; let gk = k0 + kk; var x = 0.0; if (gn < N && gk < kEnd) { x = B[bBase + i32(gk) * rsb + i32(gn) * csb]; } Bs[kk * ${bn}u + nn] = x;`;
  });
  emit('    workgroupBarrier();');
  emit(`    for (var kk = 0u; kk < ${bk}u; kk++) {`);
  // rows ty + a·nty and columns tx + b·ntx: neighbouring invocations read neighbouring Bs words
  for (let a = 0; a < tm; a++) emit(`      let a${a} = As[kk * ${bm}u + ty + ${a * nty}u];`);
  for (let b = 0; b < tn; b++) emit(`      let b${b} = Bs[kk * ${bn}u + tx + ${b * ntx}u];`);
  for (let a = 0; a < tm; a++)
    for (let b = 0; b < tn; b++) emit(`      c${a}_${b} = fma(a${a}, b${b}, c${a}_${b});`);
  emit('    }');
  emit('    workgroupBarrier();');
  emit('  }');
  emit(`  let alpha = bitcast<f32>(${u(W.ALPHA)});`);
  emit(
    `  let oBase = i32(batch) * ${si(W.OBS)}${v.split ? ` + i32(part * ${u(W.PART)})` : ''}; let ors = ${si(W.ORS)}; let ocs = ${si(W.OCS)};`,
  );
  if (v.residual)
    emit(
      `  let rBase = ${si(W.OR)} + i32(batch) * ${si(W.RBS)}; let rrs = ${si(W.RRS)}; let rcs = ${si(W.RCS)};`,
    );
  for (let a = 0; a < tm; a++) {
    for (let b = 0; b < tn; b++) {
      const val = v.split
        ? `c${a}_${b}`
        : v.residual
          ? `R[rBase + r * rrs + q * rcs] + alpha * c${a}_${b}`
          : `alpha * c${a}_${b}`;
      emit(
        `  { let gm = m0 + ty + ${a * nty}u; let gn = n0 + tx + ${b * ntx}u; if (gm < M && gn < N) { let r = i32(gm); let q = i32(gn); C[oBase + r * ors + q * ocs] = ${val}; } }`,
      );
    }
  }
  emit('}');
  return L.join('\n');
}

/**
 * N ≤ 16 with A's rows contiguous (shrink x·Aᵀ, dh = dY·B): a row per 32 invocations, which
 * stride over K (coalesced reads of A, B from cache) and each keep the N partial dots; the 32
 * partials of each column are then summed in order from workgroup memory. The tile kernel runs
 * only M·N/4 invocations here (4096 for r = 4), too few to hide the memory latency.
 */
export function rowdotShader(v: Variant): string {
  const bn = v.tile.bn;
  const gather = v.gatherA || v.gatherB;
  const off = (g: boolean) => (g ? 'slot_of(batch)' : 'i32(batch)');
  const cols = Array.from({ length: bn }, (_, j) => j);
  return `${metaStruct(WORDS)}
@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
${v.residual ? '@group(0) @binding(4) var<storage, read> R: array<f32>;' : ''}
${gather ? `@group(0) @binding(${v.residual ? 5 : 4}) var<storage, read> ix: array<i32>;\n@group(0) @binding(${v.residual ? 6 : 5}) var<storage, read_write> err: array<atomic<u32>, 4>;\n${INDEX_CHECK}` : ''}
var<workgroup> red: array<f32, ${256 * bn}>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let M = ${u(W.M)}; let N = ${u(W.N)}; let K = ${u(W.K)};
  let rsa = ${si(W.RSA)}; let rsb = ${si(W.RSB)}; let csb = ${si(W.CSB)};
  let batch = wid.z + ${u(W.BATCH0)};
  let aBase = ${si(W.OA)} + ${off(v.gatherA)} * ${si(W.BSA)};
  let bBase = ${si(W.OB)} + ${off(v.gatherB)} * ${si(W.BSB)};
  let g = tid / 32u; let l = tid % 32u;
  let row = wid.x * 8u + g;
  let aRow = aBase + i32(min(row, M - 1u)) * rsa;
  ${cols.map((j) => `var c${j} = 0.0; let q${j} = i32(min(${j}u, N - 1u)) * csb;`).join('\n  ')}
  for (var k = l; k < K; k += 32u) {
    let a = A[aRow + i32(k)];
    let bk = bBase + i32(k) * rsb;
    ${cols.map((j) => `c${j} = fma(a, B[bk + q${j}], c${j});`).join('\n    ')}
  }
  ${cols.map((j) => `red[tid * ${bn}u + ${j}u] = c${j};`).join('\n  ')}
  workgroupBarrier();
  if (l < N && row < M) {
    var acc = 0.0;
    for (var p = 0u; p < 32u; p++) { acc += red[(g * 32u + p) * ${bn}u + l]; }
    let alpha = bitcast<f32>(${u(W.ALPHA)});
    let o = i32(batch) * ${si(W.OBS)} + i32(row) * ${si(W.ORS)} + i32(l) * ${si(W.OCS)};
    ${
      v.residual
        ? `C[o] = R[${si(W.OR)} + i32(batch) * ${si(W.RBS)} + i32(row) * ${si(W.RRS)} + i32(l) * ${si(W.RCS)}] + alpha * acc;`
        : 'C[o] = alpha * acc;'
    }
  }
}`;
}

/** Σ of the split partial slabs, in order, then the epilogue; out is contiguous [batch, m, n]. */
function splitReduceShader(residual: boolean): string {
  return `${metaStruct(9)}
@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<storage, read> P: array<f32>;
${residual ? '@group(0) @binding(3) var<storage, read> R: array<f32>;' : ''}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  let total = ${u(0)};
  if (i >= total) { return; }
  var acc = 0.0;
  for (var s = 0u; s < ${u(1)}; s++) { acc += P[s * total + i]; }
  let alpha = bitcast<f32>(${u(2)});
  ${
    residual
      ? `let mn = ${u(7)} * ${u(3)}; let b = i / mn; let row = (i % mn) / ${u(3)}; let col = i % ${u(3)};
  C[i] = R[${si(4)} + i32(b) * ${si(5)} + i32(row) * ${si(6)} + i32(col) * ${si(8)}] + alpha * acc;`
      : 'C[i] = alpha * acc;'
  }
}`;
}

/** Tile for an output whose column count (after any swap) is at most 64. */
function skinnyTile(n: number): Tile {
  const bn = Math.max(4, 2 ** Math.ceil(Math.log2(Math.max(1, n))));
  const tn = Math.min(bn, 4);
  const ntx = bn / tn;
  // 64 rows, 64–256 invocations: TM = 4 at N = 64, 1 at N ≤ 16
  return { bm: 64, bn, bk: forcedBk ?? 16, tm: Math.max(1, ntx / 4), tn };
}

const SQUARE: Tile = { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 };

/**
 * K chunks per output tile: about 1024 workgroups in all, each chunk ≥ 128 deep, at most 32. H200
 * sweep (bench/results/h200-2026-12-02-fused/lora-kernels.txt, r = 4..64): the K = 4096
 * reductions to [768, r] and [r, 2304] were fastest at 16–32 chunks (r = 64 dAᵀ: 786 µs unsplit,
 * 111 µs at 16), where the first heuristic (256 workgroups) chose 4–8.
 */
function splitCount(tiles: number, k: number): number {
  if (forcedSplit !== null) return Math.max(1, Math.min(forcedSplit, Math.ceil(k / 16)));
  const wanted = Math.ceil(1024 / tiles);
  return Math.max(1, Math.min(wanted, Math.floor(k / 128), 32));
}

let forcedSplit: number | null = null;
let forcedBk: number | null = null;
let rowdotEnabled = true;
let skinnyEnabled = true;

/**
 * Benchmarks and tests: `enabled: false` sends every matmul to the general kernel (loraMatmul
 * still runs here); `split` forces the number of K chunks (1 = no split-K; null = the heuristic);
 * `bk` the K depth staged per step of the skinny tiles (16 by default); `rowdot: false` turns
 * off the row kernel for N ≤ 16 (the tiles run instead).
 *
 * @example
 * lr.setSkinnyMatmul({ split: 1 }); // no split-K
 * lr.setSkinnyMatmul({ enabled: true, split: null }); // the defaults
 */
export function setSkinnyMatmul(options: {
  enabled?: boolean;
  split?: number | null;
  bk?: number | null;
  rowdot?: boolean;
}): void {
  if (options.enabled !== undefined) skinnyEnabled = options.enabled;
  if (options.rowdot !== undefined) rowdotEnabled = options.rowdot;
  if (options.bk !== undefined) forcedBk = options.bk;
  if (options.split !== undefined) forcedSplit = options.split;
}

/** A [batch, rows, cols] view of strides (bs, rs, cs) with the two matrix dims swapped. */
function swapped(v: View): View {
  const [bs, rs, cs] = v.strides;
  return { ...v, strides: [bs, cs, rs] };
}

interface Call {
  a: View;
  b: View;
  index: View | null;
  slots: number;
  residual: View | null;
  alpha: number;
  batch: number;
  m: number;
  k: number;
  n: number;
}

/**
 * Records out = residual + α·a·b (b gathered by index) into a new contiguous [batch, m, n]
 * storage, with the tile chosen from the shape: skinny when n ≤ 64, on the transposed problem
 * when m ≤ 64, 64×64 tiles otherwise.
 */
function record(c: WebGPUContext, op: string, call: Call): Storage {
  const { batch, m, k, n } = call;
  const out = c.allocate(op, 'float32', batch * m * n);
  if (batch * m * n === 0) return out;
  // swap: compute Cᵀ = bᵀ·aᵀ so the skinny dim is the column dim
  const swap = n > 64 && m <= 64;
  const [M, N] = swap ? [n, m] : [m, n];
  const A = swap ? swapped(call.b) : call.a;
  const B = swap ? swapped(call.a) : call.b;
  let tile = N <= 64 ? skinnyTile(N) : SQUARE;
  if ((tile.bm + tile.bn) * tile.bk * 4 > c.limits.maxComputeWorkgroupStorageSize) tile = { ...tile, bk: 16 };
  const tiles = Math.ceil(M / tile.bm) * Math.ceil(N / tile.bn);
  // the row kernel reads B along K from cache: at r = 16, dh = dY·B (B [2304, 16] row-major,
  // K-stride 16) took 308 µs on the H200 against 66 µs in tiles; with B's K contiguous (shrink
  // x·Aᵀ) or N ≤ 4 it won (r = 4 shrink 13 µs vs 26, dh 33 vs 52)
  const rowdot =
    rowdotEnabled &&
    N <= 16 &&
    A.strides[2] === 1 &&
    (B.strides[1] === 1 || N <= 4) &&
    Math.ceil(M / 8) <= c.limits.maxComputeWorkgroupsPerDimension;
  let S = rowdot ? 1 : splitCount(tiles * batch, k);
  const kch = Math.max(tile.bk, Math.ceil(Math.ceil(k / S) / tile.bk) * tile.bk);
  S = Math.max(1, Math.ceil(k / kch));
  const maxZ = c.limits.maxComputeWorkgroupsPerDimension;
  const perCall = Math.max(1, Math.floor(maxZ / S));
  const res = call.residual;
  const variant: Variant = {
    tile,
    aRow: A.strides[2] === 1,
    bRow: B.strides[2] === 1,
    gatherA: swap && call.index !== null,
    gatherB: !swap && call.index !== null,
    residual: res !== null && S === 1,
    split: S > 1,
  };
  const key = `skinny${rowdot ? '-rowdot' : ''}|${tile.bm}x${tile.bn}x${tile.bk}/${tile.tm}x${tile.tn}|${variant.aRow ? 'r' : 'c'}${variant.bRow ? 'r' : 'c'}|${variant.gatherA ? 'ga' : ''}${variant.gatherB ? 'gb' : ''}${variant.residual ? 'res' : ''}${variant.split ? 'split' : ''}`;
  const pipeline = c.pipeline(key, () => (rowdot ? rowdotShader(variant) : skinnyShader(variant)));
  const total = batch * m * n;
  const scratch = S > 1 ? c.scratch(op, S * total) : null;
  const target = scratch ? new Storage('webgpu', 'float32', S * total, S * total * 4, scratch) : out;
  const bindings = [bindingOf(target), bindingOf(A.storage), bindingOf(B.storage)];
  if (variant.residual && res) bindings.push(bindingOf(res.storage));
  if (call.index) bindings.push(bindingOf(call.index.storage), { buffer: c.errorFlag, size: 16 });
  for (let b0 = 0; b0 < batch; b0 += perCall) {
    const words = new Uint32Array(WORDS);
    const ints = new Int32Array(words.buffer);
    words[W.M] = M;
    words[W.N] = N;
    words[W.K] = k;
    words[W.KCH] = kch;
    words[W.S] = S;
    words[W.OA] = A.offset;
    ints[W.BSA] = A.strides[0];
    ints[W.RSA] = A.strides[1];
    ints[W.CSA] = A.strides[2];
    words[W.OB] = B.offset;
    ints[W.BSB] = B.strides[0];
    ints[W.RSB] = B.strides[1];
    ints[W.CSB] = B.strides[2];
    ints[W.OBS] = m * n;
    // C[i, j] lives at i·n + j; swapped, the kernel's (row, col) is (j, i)
    ints[W.ORS] = swap ? 1 : n;
    ints[W.OCS] = swap ? n : 1;
    if (res) {
      words[W.OR] = res.offset;
      ints[W.RBS] = res.strides[0];
      ints[W.RRS] = swap ? res.strides[2] : res.strides[1];
      ints[W.RCS] = swap ? res.strides[1] : res.strides[2];
    }
    new Float32Array(words.buffer)[W.ALPHA] = call.alpha;
    words[W.PART] = total;
    words[W.BATCH0] = b0;
    words[W.SLOTS] = call.slots;
    if (call.index) {
      words[W.IOFF] = call.index.offset;
      ints[W.ISTR] = call.index.strides[0];
    }
    const gz = Math.min(perCall, batch - b0) * S;
    const grid: [number, number, number] = rowdot
      ? [Math.ceil(M / 8), 1, gz]
      : [Math.ceil(N / tile.bn), Math.ceil(M / tile.bm), gz];
    c.dispatch(pipeline, words, bindings, grid);
  }
  if (scratch) {
    const withRes = res !== null;
    const red = c.pipeline(`skinny-split|${withRes ? 'res' : ''}`, () => splitReduceShader(withRes));
    // words: total, S, α, n, residual offset and strides (batch, row, col in words 5, 6, 8), m
    const words = new Uint32Array(9);
    const ints = new Int32Array(words.buffer);
    words[0] = total;
    words[1] = S;
    new Float32Array(words.buffer)[2] = call.alpha;
    words[3] = n;
    words[7] = m;
    const rb = [bindingOf(out), bindingOf(target)];
    if (res) {
      ints[4] = res.offset;
      ints[5] = res.strides[0];
      ints[6] = res.strides[1];
      ints[8] = res.strides[2];
      rb.push(bindingOf(res.storage));
    }
    c.dispatch(red, words, rb, c.grid(Math.ceil(total / 256)));
    c.release(scratch);
  }
  return out;
}

/**
 * Whether `matmul` takes a shape here. Measured on the H200 at M = 4096, K = 768, N = 2304
 * (lora-kernels.txt): with the skinny side ≤ 32 (r = 4, 16) these kernels beat or tie the
 * general one on every LoRA shape; at 64 they win only the K-reductions that need split-K
 * (dAᵀ, dBᵀ: K = 4096 ≥ the long side), and a tiny inner dim with both M and N large (dx = dh·A)
 * is no faster than the general kernel's 128×128 tiles, so those stay there. Batched matmuls
 * with a 64-wide side (attention heads) are left to the general kernel too.
 */
function takes(batch: number, m: number, k: number, n: number): boolean {
  const skinny = Math.min(m, n);
  if (skinny <= 32) return true;
  return skinny <= 64 && batch === 1 && k >= Math.max(m, n);
}

/**
 * The KernelTable `matmul` for the shapes above (any strides); null for shapes it does not take
 * (see `takes`, or `setSkinnyMatmul({ enabled: false })`), which the general kernel then runs.
 */
export function skinnyMatmul(
  c: WebGPUContext,
  a: View,
  b: View,
  batch: number,
  m: number,
  k: number,
  n: number,
): Storage | null {
  if (!skinnyEnabled || k === 0 || batch * m * n === 0 || !takes(batch, m, k, n)) return null;
  c.check('matmul');
  return record(c, 'matmul', { a, b, index: null, slots: 0, residual: null, alpha: 1, batch, m, k, n });
}

export const loraMatmul: GpuKernel<'loraMatmul'> = (c, a, w, index, residual, alpha, batch, m, k, n) => {
  c.check('loraMatmul');
  const slots = index ? w.shape[0] : batch;
  return record(c, 'loraMatmul', { a, b: w, index, slots, residual, alpha, batch, m, k, n });
};
