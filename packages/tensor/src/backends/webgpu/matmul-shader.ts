import { metaStruct, u } from './wgsl.js';

/**
 * WGSL of the tiled f32 matmul, generated per tile configuration, operand layout and epilogue
 * (hand-unrolled: Tint does not unroll loops). A workgroup computes a BM×BN block of C; each
 * invocation a TM×TN register block, held as TM·TN/4 vec4 accumulators. The K loop stages BK-deep
 * slices of A (stored transposed, k-major) and B in double-buffered workgroup memory, prefetching
 * the next slice into registers while the current one is multiplied (one barrier per slice). Each
 * invocation's rows and columns are split into groups of 4 spaced BM/(TM/4) apart so vec4 reads
 * of workgroup memory from neighbouring invocations are contiguous. Global loads are vec4 along
 * whichever dim of an operand is contiguous (transposed operands are read through their strides,
 * never copied); operands whose strides allow no vec4 are read one float at a time, along the dim
 * of the smaller stride so that neighbouring invocations read neighbouring addresses.
 *
 * Workgroups walk the tiles of C in groups of GROUP tile rows (row by row inside a group, one
 * column of tiles after the other), so the workgroups in flight share panels of A and B in L2.
 * A split-K variant computes the K range [split·KCHUNK, (split+1)·KCHUNK) of workgroup z's split
 * into its own slice of a partial buffer; `splitReduceShader` sums the slices in a fixed order.
 */
export interface MatmulConfig {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
}

/** A: vec4 along K / vec4 along M / scalar, K fastest / scalar, M fastest. */
export type ALayout = 'k' | 'm' | 'sk' | 'sm';
/** B: vec4 along N / vec4 along K / scalar, N fastest / scalar, K fastest. */
export type BLayout = 'n' | 'k' | 'sn' | 'sk';

/** What the store adds to alpha·A·B (fused epilogue). */
export interface EpilogueFlags {
  bias: boolean;
  residual: boolean;
}

export interface Variant {
  cfg: MatmulConfig;
  a: ALayout;
  b: BLayout;
  /** M, N, K (and the split's K range) are multiples of the tile: no bounds checks. */
  aligned: boolean;
  /** N % 4 == 0: vec4 stores of C. */
  cvec: boolean;
  /** Writes partial sums of a K range into slice `split` of C (a scratch buffer). */
  split: boolean;
  /** alpha·A·B + bias[col] + residual[batch, row, col] at the store; null: plain A·B. */
  epi: EpilogueFlags | null;
}

// meta words of the matmul kernel
export const W = {
  M: 0,
  N: 1,
  K: 2,
  OA: 3,
  OB: 4,
  BSA: 5,
  RSA: 6,
  CSA: 7,
  BSB: 8,
  RSB: 9,
  CSB: 10,
  BATCH0: 11,
  /** Tiles along N and along M. */
  GX: 12,
  GY: 13,
  /** Tile rows per group of the walk. */
  GROUP: 14,
  /** Width of the dispatched grid (tile index = wid.x + wid.y·WX). */
  WX: 15,
  KCHUNK: 16,
  SPLITS: 17,
  /** Batch count of the whole product (the partial buffer's slice stride is BATCHES·M·N). */
  BATCHES: 18,
  OBIAS: 19,
  SBIAS: 20,
  ORES: 21,
  BSR: 22,
  RSR: 23,
  CSR: 24,
  ALPHA: 25,
} as const;
export const WORDS = 26;

const i = (w: number) => `bitcast<i32>(${u(w)})`;
const f = (w: number) => `bitcast<f32>(${u(w)})`;

/** Pipeline cache key of a variant. */
export function variantKey(v: Variant): string {
  const { bm, bn, bk, tm, tn } = v.cfg;
  const epi = v.epi ? `|e${v.epi.bias ? 'b' : ''}${v.epi.residual ? 'r' : ''}` : '';
  return `mm|${bm}x${bn}x${bk}/${tm}x${tn}|${v.a}.${v.b}|${v.aligned ? 'al' : 'ck'}|${v.cvec ? 'v' : 's'}${v.split ? '|split' : ''}${epi}`;
}

type Plan = { loads: string[]; stores: string[]; regs: string[] };

/** Loads of one BK slice of A into registers and their stores into As (k-major, BM wide). */
function planA(v: Variant, wgs: number): Plan {
  const { bm, bk } = v.cfg;
  const chk = !v.aligned;
  const p: Plan = { loads: [], stores: [], regs: [] };
  const vec = v.a === 'k' || v.a === 'm';
  const units = vec ? (bm * bk) / 4 : bm * bk;
  const per = Math.ceil(units / wgs);
  for (let r = 0; r < per; r++) {
    const uu = `(tid + ${r * wgs}u)`;
    const guard = units % wgs === 0 ? '' : `if (${uu} < ${units}u) `;
    const reg = `ra${r}`;
    if (v.a === 'k') {
      p.regs.push(`var ${reg}: vec4<f32>;`);
      const row = `(${uu} / ${bk / 4}u)`;
      const k4 = `(${uu} % ${bk / 4}u)`;
      const cond = chk ? `m0 + ${row} < M && k0 + 4u * ${k4} < kEnd` : 'true';
      p.loads.push(
        `${guard}{ let gm = m0 + ${row}; let gk = k0 + 4u * ${k4}; ${reg} = select(vec4<f32>(0.0), A[max(0, aBase + i32(gm) * rsa + i32(gk)) / 4], ${cond}); }`,
      );
      const st: string[] = [];
      for (let c = 0; c < 4; c++) {
        st.push(
          `{ let e = (4u * ${k4} + ${c}u) * ${bm}u + ${row}; As[buf + e / 4u][e % 4u] = ${reg}[${c}]; }`,
        );
      }
      p.stores.push(`${guard}{ ${st.join(' ')} }`);
    } else if (v.a === 'm') {
      p.regs.push(`var ${reg}: vec4<f32>;`);
      const kk = `(${uu} / ${bm / 4}u)`;
      const m4 = `(${uu} % ${bm / 4}u)`;
      const cond = chk ? `m0 + 4u * ${m4} < M && k0 + ${kk} < kEnd` : 'true';
      p.loads.push(
        `${guard}{ let gm = m0 + 4u * ${m4}; let gk = k0 + ${kk}; ${reg} = select(vec4<f32>(0.0), A[max(0, aBase + i32(gk) * csa + i32(gm)) / 4], ${cond}); }`,
      );
      p.stores.push(`${guard}{ As[buf + ${kk} * ${bm / 4}u + ${m4}] = ${reg}; }`);
    } else {
      p.regs.push(`var ${reg}: f32;`);
      const kFast = v.a === 'sk';
      const row = kFast ? `(${uu} / ${bk}u)` : `(${uu} % ${bm}u)`;
      const kk = kFast ? `(${uu} % ${bk}u)` : `(${uu} / ${bm}u)`;
      const cond = chk ? `m0 + ${row} < M && k0 + ${kk} < kEnd` : 'true';
      p.loads.push(
        `${guard}{ let gm = m0 + ${row}; let gk = k0 + ${kk}; ${reg} = select(0.0, A[max(0, aBase + i32(gm) * rsa + i32(gk) * csa)], ${cond}); }`,
      );
      p.stores.push(`${guard}{ let e = ${kk} * ${bm}u + ${row}; As[buf + e / 4u][e % 4u] = ${reg}; }`);
    }
  }
  return p;
}

/** Loads of one BK slice of B into registers and their stores into Bs (k-major, BN wide). */
function planB(v: Variant, wgs: number): Plan {
  const { bn, bk } = v.cfg;
  const chk = !v.aligned;
  const p: Plan = { loads: [], stores: [], regs: [] };
  const vec = v.b === 'n' || v.b === 'k';
  const units = vec ? (bn * bk) / 4 : bn * bk;
  const per = Math.ceil(units / wgs);
  for (let r = 0; r < per; r++) {
    const uu = `(tid + ${r * wgs}u)`;
    const guard = units % wgs === 0 ? '' : `if (${uu} < ${units}u) `;
    const reg = `rb${r}`;
    if (v.b === 'n') {
      p.regs.push(`var ${reg}: vec4<f32>;`);
      const kk = `(${uu} / ${bn / 4}u)`;
      const n4 = `(${uu} % ${bn / 4}u)`;
      const cond = chk ? `k0 + ${kk} < kEnd && n0 + 4u * ${n4} < N` : 'true';
      p.loads.push(
        `${guard}{ let gk = k0 + ${kk}; let gn = n0 + 4u * ${n4}; ${reg} = select(vec4<f32>(0.0), B[max(0, bBase + i32(gk) * rsb + i32(gn)) / 4], ${cond}); }`,
      );
      p.stores.push(`${guard}{ Bs[buf + ${kk} * ${bn / 4}u + ${n4}] = ${reg}; }`);
    } else if (v.b === 'k') {
      p.regs.push(`var ${reg}: vec4<f32>;`);
      const col = `(${uu} / ${bk / 4}u)`;
      const k4 = `(${uu} % ${bk / 4}u)`;
      const cond = chk ? `n0 + ${col} < N && k0 + 4u * ${k4} < kEnd` : 'true';
      p.loads.push(
        `${guard}{ let gn = n0 + ${col}; let gk = k0 + 4u * ${k4}; ${reg} = select(vec4<f32>(0.0), B[max(0, bBase + i32(gn) * csb + i32(gk)) / 4], ${cond}); }`,
      );
      const st: string[] = [];
      for (let c = 0; c < 4; c++) {
        st.push(
          `{ let e = (4u * ${k4} + ${c}u) * ${bn}u + ${col}; Bs[buf + e / 4u][e % 4u] = ${reg}[${c}]; }`,
        );
      }
      p.stores.push(`${guard}{ ${st.join(' ')} }`);
    } else {
      p.regs.push(`var ${reg}: f32;`);
      const nFast = v.b === 'sn';
      const kk = nFast ? `(${uu} / ${bn}u)` : `(${uu} % ${bk}u)`;
      const col = nFast ? `(${uu} % ${bn}u)` : `(${uu} / ${bk}u)`;
      const cond = chk ? `k0 + ${kk} < kEnd && n0 + ${col} < N` : 'true';
      p.loads.push(
        `${guard}{ let gk = k0 + ${kk}; let gn = n0 + ${col}; ${reg} = select(0.0, B[max(0, bBase + i32(gk) * rsb + i32(gn) * csb)], ${cond}); }`,
      );
      p.stores.push(`${guard}{ let e = ${kk} * ${bn}u + ${col}; Bs[buf + e / 4u][e % 4u] = ${reg}; }`);
    }
  }
  return p;
}

/** WGSL expressions of the epilogue's terms for output (r, col + e): bias and residual reads. */
function epilogueTerms(epi: EpilogueFlags | null, col: string): string[] {
  const t: string[] = [];
  if (epi?.bias) t.push(`Bi[${i(W.OBIAS)} + i32(${col}) * ${i(W.SBIAS)}]`);
  if (epi?.residual) t.push(`R[resRow + i32(${col}) * ${i(W.CSR)}]`);
  return t;
}

/** WGSL of one matmul variant. */
export function matmulShader(v: Variant): string {
  const { bm, bn, bk, tm, tn } = v.cfg;
  const ntx = bn / tn;
  const nty = bm / tm;
  const wgs = ntx * nty;
  const gm = tm / 4; // row groups of 4
  const gn = tn / 4;
  const L: string[] = [];
  const emit = (s: string) => L.push(s);
  const aVec = v.a === 'k' || v.a === 'm';
  const bVec = v.b === 'n' || v.b === 'k';
  const pa = planA(v, wgs);
  const pb = planB(v, wgs);
  const aSlice = (bk * bm) / 4;
  const bSlice = (bk * bn) / 4;
  const epi = v.epi && !v.split ? v.epi : null;

  emit(metaStruct(WORDS));
  emit(`@group(0) @binding(1) var<storage, read_write> C: array<${v.cvec ? 'vec4<f32>' : 'f32'}>;`);
  emit(`@group(0) @binding(2) var<storage, read> A: array<${aVec ? 'vec4<f32>' : 'f32'}>;`);
  emit(`@group(0) @binding(3) var<storage, read> B: array<${bVec ? 'vec4<f32>' : 'f32'}>;`);
  let binding = 4;
  if (epi?.bias) emit(`@group(0) @binding(${binding++}) var<storage, read> Bi: array<f32>;`);
  if (epi?.residual) emit(`@group(0) @binding(${binding++}) var<storage, read> R: array<f32>;`);
  emit(`var<workgroup> As: array<vec4<f32>, ${2 * aSlice}>;`);
  emit(`var<workgroup> Bs: array<vec4<f32>, ${2 * bSlice}>;`);
  emit(`@compute @workgroup_size(${wgs})`);
  emit('fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {');
  emit(`  let M = ${u(W.M)}; let N = ${u(W.N)}; let K = ${u(W.K)};`);
  emit(`  let rsa = ${i(W.RSA)}; let csa = ${i(W.CSA)}; let rsb = ${i(W.RSB)}; let csb = ${i(W.CSB)};`);
  // tile walk: groups of GROUP tile rows, down the rows of a group first
  emit(`  let tile = wid.x + wid.y * ${u(W.WX)}; let GX = ${u(W.GX)}; let GY = ${u(W.GY)};`);
  emit('  if (tile >= GX * GY) { return; }');
  emit(`  let per = ${u(W.GROUP)} * GX; let first = (tile / per) * ${u(W.GROUP)};`);
  emit(`  let rows = min(GY - first, ${u(W.GROUP)}); let inG = tile % per;`);
  emit(`  let m0 = (first + inG % rows) * ${bm}u; let n0 = (inG / rows) * ${bn}u;`);
  if (v.split) {
    emit(`  let split = wid.z % ${u(W.SPLITS)}; let batch = wid.z / ${u(W.SPLITS)} + ${u(W.BATCH0)};`);
    emit(`  let kStart = split * ${u(W.KCHUNK)}; let kEnd = min(K, kStart + ${u(W.KCHUNK)});`);
  } else {
    emit(`  let batch = wid.z + ${u(W.BATCH0)};`);
    emit('  let kStart = 0u; let kEnd = K;');
  }
  emit(`  let aBase = ${i(W.OA)} + i32(batch) * ${i(W.BSA)};`);
  emit(`  let bBase = ${i(W.OB)} + i32(batch) * ${i(W.BSB)};`);
  emit(`  let tx = tid % ${ntx}u; let ty = tid / ${ntx}u;`);
  for (const r of [...pa.regs, ...pb.regs]) emit(`  ${r}`);
  for (let a = 0; a < tm; a++) for (let h = 0; h < gn; h++) emit(`  var acc${a}_${h} = vec4<f32>(0.0);`);
  emit(`  let nt = (kEnd - kStart + ${bk - 1}u) / ${bk}u;`);
  emit('  var k0 = kStart;');
  emit('  {');
  for (const s of [...pa.loads, ...pb.loads]) emit(`    ${s}`);
  emit('    let buf = 0u;');
  for (const s of pa.stores) emit(`    ${s}`);
  emit('  }');
  emit('  {');
  emit('    let buf = 0u;');
  for (const s of pb.stores) emit(`    ${s}`);
  emit('  }');
  emit('  workgroupBarrier();');
  emit('  for (var t = 0u; t < nt; t++) {');
  emit('    let cur = t & 1u;');
  emit('    let more = t + 1u < nt;');
  emit(`    if (more) { k0 = kStart + (t + 1u) * ${bk}u;`);
  for (const s of [...pa.loads, ...pb.loads]) emit(`      ${s}`);
  emit('    }');
  emit(`    let ab = cur * ${aSlice}u + ty;`);
  emit(`    let bb = cur * ${bSlice}u + tx;`);
  for (let kk = 0; kk < bk; kk++) {
    for (let g = 0; g < gm; g++) emit(`    let a${kk}_${g} = As[ab + ${kk * (bm / 4) + g * nty}u];`);
    for (let h = 0; h < gn; h++) emit(`    let b${kk}_${h} = Bs[bb + ${kk * (bn / 4) + h * ntx}u];`);
    for (let g = 0; g < gm; g++) {
      for (let c = 0; c < 4; c++) {
        const row = g * 4 + c;
        for (let h = 0; h < gn; h++) {
          emit(`    acc${row}_${h} = fma(vec4<f32>(a${kk}_${g}.${'xyzw'[c]}), b${kk}_${h}, acc${row}_${h});`);
        }
      }
    }
  }
  emit('    if (more) {');
  emit(`      let buf = (1u - cur) * ${aSlice}u;`);
  for (const s of pa.stores) emit(`      ${s}`);
  emit('    }');
  emit('    if (more) {');
  emit(`      let buf = (1u - cur) * ${bSlice}u;`);
  for (const s of pb.stores) emit(`      ${s}`);
  emit('    }');
  emit('    workgroupBarrier();');
  emit('  }');
  emit(v.split ? `  let cBase = (split * ${u(W.BATCHES)} + batch) * M * N;` : '  let cBase = batch * M * N;');
  if (epi) emit(`  let alpha = ${f(W.ALPHA)};`);
  const value = (acc: string) => (epi ? `alpha * ${acc}` : acc);
  for (let g = 0; g < gm; g++) {
    for (let c = 0; c < 4; c++) {
      const row = g * 4 + c;
      emit(`  { let r = m0 + ${g * 4 * nty}u + ty * 4u + ${c}u;`);
      if (epi?.residual)
        emit(`    let resRow = ${i(W.ORES)} + i32(batch) * ${i(W.BSR)} + i32(r) * ${i(W.RSR)};`);
      for (let h = 0; h < gn; h++) {
        emit(`    { let col = n0 + ${h * 4 * ntx}u + tx * 4u;`);
        const acc = `acc${row}_${h}`;
        if (v.cvec) {
          let val = value(acc);
          if (epi) {
            const terms = [0, 1, 2, 3].map((e) => epilogueTerms(epi, `col + ${e}u`));
            for (let t = 0; t < terms[0].length; t++) {
              val += ` + vec4<f32>(${terms.map((x) => x[t]).join(', ')})`;
            }
          }
          emit(`      if (r < M && col < N) { C[(cBase + r * N + col) / 4u] = ${val}; } }`);
        } else {
          for (let e = 0; e < 4; e++) {
            const val = [value(`${acc}.${'xyzw'[e]}`), ...epilogueTerms(epi, `col + ${e}u`)].join(' + ');
            emit(`      if (r < M && col + ${e}u < N) { C[cBase + r * N + col + ${e}u] = ${val}; }`);
          }
          emit('    }');
        }
      }
      emit('  }');
    }
  }
  emit('}');
  return L.join('\n');
}

// meta words of the split-K reduction
export const SW = {
  TOTAL: 0,
  SPLITS: 1,
  M: 2,
  N: 3,
  OBIAS: 4,
  SBIAS: 5,
  ORES: 6,
  BSR: 7,
  RSR: 8,
  CSR: 9,
  ALPHA: 10,
} as const;
export const SWORDS = 11;
export const SPLIT_WG = 256;

/**
 * WGSL of the split-K reduction: C[i] = alpha·Σ_s P[s·TOTAL + i] (+ bias + residual), the slices
 * summed in order 0, 1, … so the result does not depend on scheduling.
 */
export function splitReduceShader(epi: EpilogueFlags | null): string {
  const L: string[] = [metaStruct(SWORDS)];
  L.push('@group(0) @binding(1) var<storage, read_write> C: array<f32>;');
  L.push('@group(0) @binding(2) var<storage, read> P: array<f32>;');
  let binding = 3;
  if (epi?.bias) L.push(`@group(0) @binding(${binding++}) var<storage, read> Bi: array<f32>;`);
  if (epi?.residual) L.push(`@group(0) @binding(${binding++}) var<storage, read> R: array<f32>;`);
  L.push(`@compute @workgroup_size(${SPLIT_WG})`);
  L.push('fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {');
  L.push(`  let idx = gid.x + gid.y * nwg.x * ${SPLIT_WG}u; let total = ${u(SW.TOTAL)};`);
  L.push('  if (idx >= total) { return; }');
  L.push('  var s = 0.0;');
  L.push(`  for (var p = 0u; p < ${u(SW.SPLITS)}; p++) { s += P[p * total + idx]; }`);
  if (epi) {
    L.push(`  s = s * bitcast<f32>(${u(SW.ALPHA)});`);
    L.push(`  let col = idx % ${u(SW.N)};`);
    if (epi.bias) L.push(`  s += Bi[${i(SW.OBIAS)} + i32(col) * ${i(SW.SBIAS)}];`);
    if (epi.residual) {
      L.push(`  let mn = ${u(SW.M)} * ${u(SW.N)}; let r = (idx % mn) / ${u(SW.N)}; let b = idx / mn;`);
      L.push(
        `  s += R[${i(SW.ORES)} + i32(b) * ${i(SW.BSR)} + i32(r) * ${i(SW.RSR)} + i32(col) * ${i(SW.CSR)}];`,
      );
    }
  }
  L.push('  C[idx] = s;');
  L.push('}');
  return L.join('\n');
}
