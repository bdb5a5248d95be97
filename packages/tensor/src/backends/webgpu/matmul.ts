import type { Storage, View } from '../../storage.js';
import type { WebGPUContext } from './context.js';
import { elementwise } from './elementwise.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { metaStruct, u } from './wgsl.js';

/**
 * Tiled f32 matmul, generated per tile configuration and operand layout (hand-unrolled: Tint does
 * not unroll loops). A workgroup computes a BM×BN block of C; each invocation a TM×TN register
 * block, held as TM·TN/4 vec4 accumulators. The K loop stages BK-deep slices of A (stored
 * transposed, k-major) and B in double-buffered workgroup memory, prefetching the next slice into
 * registers while the current one is multiplied (one barrier per slice). Each invocation's rows
 * and columns are split into groups of 4 spaced BM/(TM/4) apart so vec4 reads of workgroup memory
 * from neighbouring invocations are contiguous. Global loads are vec4 along whichever dim of an
 * operand is contiguous (so transposed operands are read through their strides, never copied).
 */
export interface MatmulConfig {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
}

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
};

let forced: MatmulConfig | null = null;

/** Forces one tile configuration for every matmul (benchmarks and tests); null restores the heuristic. */
export function setMatmulConfig(config: MatmulConfig | string | null): void {
  if (typeof config === 'string') {
    const c = MATMUL_CONFIGS[config];
    if (!c)
      throw new Error(
        `setMatmulConfig: unknown config '${config}' (${Object.keys(MATMUL_CONFIGS).join(', ')})`,
      );
    forced = c;
  } else forced = config;
}

function smemBytes(c: MatmulConfig): number {
  return 2 * c.bk * (c.bm + c.bn) * 4;
}

function tiles(c: MatmulConfig, batch: number, m: number, n: number): number {
  return batch * Math.ceil(m / c.bm) * Math.ceil(n / c.bn);
}

/** Heuristic: the largest tile that still gives the GPU enough workgroups. */
export function chooseConfig(limits: GPUSupportedLimits, batch: number, m: number, n: number): MatmulConfig {
  const fits = (c: MatmulConfig) =>
    smemBytes(c) <= limits.maxComputeWorkgroupStorageSize &&
    (c.bm / c.tm) * (c.bn / c.tn) <= limits.maxComputeInvocationsPerWorkgroup;
  if (forced && fits(forced)) return forced;
  // measured on an H100 (docs/perf.md): 128×128 tiles of 8×16 per invocation once there are ≥ 256
  // of them (2048³: 34 TFLOP/s), 64×128×32 tiles from 128 (1024³: 29 vs 16 with 128×128), smaller below
  const big = MATMUL_CONFIGS.t128x128x8r16;
  if (fits(big) && tiles(big, batch, m, n) >= 256) return big;
  for (const mid of [MATMUL_CONFIGS.t64x128x32, MATMUL_CONFIGS.t64x128x16]) {
    if (fits(mid) && tiles(mid, batch, m, n) >= 128) return mid;
  }
  if (tiles(MATMUL_CONFIGS.t64x64x16, batch, m, n) >= 64) return MATMUL_CONFIGS.t64x64x16;
  return MATMUL_CONFIGS.t32x32x16;
}

type ALayout = 'k' | 'm' | 's';
type BLayout = 'n' | 'k' | 's';

function aLayout(a: View, batch: number, m: number, k: number): ALayout {
  const [bs, rs, cs] = a.strides;
  const bOk = batch === 1 || bs % 4 === 0;
  if (a.offset % 4 !== 0 || !bOk) return 's';
  if (cs === 1 && k % 4 === 0 && (m === 1 || rs % 4 === 0)) return 'k';
  if (rs === 1 && m % 4 === 0 && (k === 1 || cs % 4 === 0)) return 'm';
  return 's';
}

function bLayout(b: View, batch: number, k: number, n: number): BLayout {
  const [bs, rs, cs] = b.strides;
  const bOk = batch === 1 || bs % 4 === 0;
  if (b.offset % 4 !== 0 || !bOk) return 's';
  if (cs === 1 && n % 4 === 0 && (k === 1 || rs % 4 === 0)) return 'n';
  if (rs === 1 && k % 4 === 0 && (n === 1 || cs % 4 === 0)) return 'k';
  return 's';
}

interface Variant {
  cfg: MatmulConfig;
  a: ALayout;
  b: BLayout;
  /** M, N, K are multiples of the tile: no bounds checks. */
  aligned: boolean;
  /** N % 4 == 0: vec4 stores of C. */
  cvec: boolean;
}

// meta words
const W_M = 0;
const W_N = 1;
const W_K = 2;
const W_OA = 3;
const W_OB = 4;
const W_BSA = 5;
const W_RSA = 6;
const W_CSA = 7;
const W_BSB = 8;
const W_RSB = 9;
const W_CSB = 10;
const W_BATCH0 = 11;
const WORDS = 12;

const i = (w: number) => `bitcast<i32>(${u(w)})`;

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
  const aVec = v.a !== 's';
  const bVec = v.b !== 's';
  const chk = !v.aligned;

  // ---- global → register loads and register → shared stores, per operand
  type Plan = { loads: string[]; stores: string[]; regs: string[] };
  const planA = (): Plan => {
    const p: Plan = { loads: [], stores: [], regs: [] };
    const units = v.a === 's' ? bm * bk : (bm * bk) / 4;
    const per = Math.ceil(units / wgs);
    for (let r = 0; r < per; r++) {
      const uu = `(tid + ${r * wgs}u)`;
      const guard = units % wgs === 0 ? '' : `if (${uu} < ${units}u) `;
      const reg = `ra${r}`;
      if (v.a === 'k') {
        p.regs.push(`var ${reg}: vec4<f32>;`);
        const row = `(${uu} / ${bk / 4}u)`;
        const k4 = `(${uu} % ${bk / 4}u)`;
        const cond = chk ? `m0 + ${row} < M && k0 + 4u * ${k4} < K` : 'true';
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
        const cond = chk ? `m0 + 4u * ${m4} < M && k0 + ${kk} < K` : 'true';
        p.loads.push(
          `${guard}{ let gm = m0 + 4u * ${m4}; let gk = k0 + ${kk}; ${reg} = select(vec4<f32>(0.0), A[max(0, aBase + i32(gk) * csa + i32(gm)) / 4], ${cond}); }`,
        );
        p.stores.push(`${guard}{ As[buf + ${kk} * ${bm / 4}u + ${m4}] = ${reg}; }`);
      } else {
        p.regs.push(`var ${reg}: f32;`);
        const row = `(${uu} / ${bk}u)`;
        const kk = `(${uu} % ${bk}u)`;
        const cond = chk ? `m0 + ${row} < M && k0 + ${kk} < K` : 'true';
        p.loads.push(
          `${guard}{ let gm = m0 + ${row}; let gk = k0 + ${kk}; ${reg} = select(0.0, A[max(0, aBase + i32(gm) * rsa + i32(gk) * csa)], ${cond}); }`,
        );
        p.stores.push(`${guard}{ let e = ${kk} * ${bm}u + ${row}; As[buf + e / 4u][e % 4u] = ${reg}; }`);
      }
    }
    return p;
  };
  const planB = (): Plan => {
    const p: Plan = { loads: [], stores: [], regs: [] };
    const units = v.b === 's' ? bn * bk : (bn * bk) / 4;
    const per = Math.ceil(units / wgs);
    for (let r = 0; r < per; r++) {
      const uu = `(tid + ${r * wgs}u)`;
      const guard = units % wgs === 0 ? '' : `if (${uu} < ${units}u) `;
      const reg = `rb${r}`;
      if (v.b === 'n') {
        p.regs.push(`var ${reg}: vec4<f32>;`);
        const kk = `(${uu} / ${bn / 4}u)`;
        const n4 = `(${uu} % ${bn / 4}u)`;
        const cond = chk ? `k0 + ${kk} < K && n0 + 4u * ${n4} < N` : 'true';
        p.loads.push(
          `${guard}{ let gk = k0 + ${kk}; let gn = n0 + 4u * ${n4}; ${reg} = select(vec4<f32>(0.0), B[max(0, bBase + i32(gk) * rsb + i32(gn)) / 4], ${cond}); }`,
        );
        p.stores.push(`${guard}{ Bs[buf + ${kk} * ${bn / 4}u + ${n4}] = ${reg}; }`);
      } else if (v.b === 'k') {
        p.regs.push(`var ${reg}: vec4<f32>;`);
        const col = `(${uu} / ${bk / 4}u)`;
        const k4 = `(${uu} % ${bk / 4}u)`;
        const cond = chk ? `n0 + ${col} < N && k0 + 4u * ${k4} < K` : 'true';
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
        const kk = `(${uu} / ${bn}u)`;
        const col = `(${uu} % ${bn}u)`;
        const cond = chk ? `k0 + ${kk} < K && n0 + ${col} < N` : 'true';
        p.loads.push(
          `${guard}{ let gk = k0 + ${kk}; let gn = n0 + ${col}; ${reg} = select(0.0, B[max(0, bBase + i32(gk) * rsb + i32(gn) * csb)], ${cond}); }`,
        );
        p.stores.push(`${guard}{ let e = ${kk} * ${bn}u + ${col}; Bs[buf + e / 4u][e % 4u] = ${reg}; }`);
      }
    }
    return p;
  };
  const pa = planA();
  const pb = planB();
  const aSlice = (bk * bm) / 4;
  const bSlice = (bk * bn) / 4;

  emit(metaStruct(WORDS));
  emit(`@group(0) @binding(1) var<storage, read_write> C: array<${v.cvec ? 'vec4<f32>' : 'f32'}>;`);
  emit(`@group(0) @binding(2) var<storage, read> A: array<${aVec ? 'vec4<f32>' : 'f32'}>;`);
  emit(`@group(0) @binding(3) var<storage, read> B: array<${bVec ? 'vec4<f32>' : 'f32'}>;`);
  emit(`var<workgroup> As: array<vec4<f32>, ${2 * aSlice}>;`);
  emit(`var<workgroup> Bs: array<vec4<f32>, ${2 * bSlice}>;`);
  emit(`@compute @workgroup_size(${wgs})`);
  emit('fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {');
  emit(`  let M = ${u(W_M)}; let N = ${u(W_N)}; let K = ${u(W_K)};`);
  emit(`  let rsa = ${i(W_RSA)}; let csa = ${i(W_CSA)}; let rsb = ${i(W_RSB)}; let csb = ${i(W_CSB)};`);
  emit(`  let batch = wid.z + ${u(W_BATCH0)};`);
  emit(`  let aBase = ${i(W_OA)} + i32(batch) * ${i(W_BSA)};`);
  emit(`  let bBase = ${i(W_OB)} + i32(batch) * ${i(W_BSB)};`);
  emit(`  let m0 = wid.y * ${bm}u; let n0 = wid.x * ${bn}u;`);
  emit(`  let tx = tid % ${ntx}u; let ty = tid / ${ntx}u;`);
  for (const r of [...pa.regs, ...pb.regs]) emit(`  ${r}`);
  for (let a = 0; a < tm; a++) for (let h = 0; h < gn; h++) emit(`  var acc${a}_${h} = vec4<f32>(0.0);`);
  emit(`  let nt = (K + ${bk - 1}u) / ${bk}u;`);
  emit('  var k0 = 0u;');
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
  emit(`    if (more) { k0 = (t + 1u) * ${bk}u;`);
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
  emit('  let cBase = batch * M * N;');
  for (let g = 0; g < gm; g++) {
    for (let c = 0; c < 4; c++) {
      const row = g * 4 + c;
      emit(`  { let r = m0 + ${g * 4 * nty}u + ty * 4u + ${c}u;`);
      for (let h = 0; h < gn; h++) {
        emit(`    { let col = n0 + ${h * 4 * ntx}u + tx * 4u;`);
        if (v.cvec) {
          emit(`      if (r < M && col < N) { C[(cBase + r * N + col) / 4u] = acc${row}_${h}; } }`);
        } else {
          for (let e = 0; e < 4; e++) {
            emit(
              `      if (r < M && col + ${e}u < N) { C[cBase + r * N + col + ${e}u] = acc${row}_${h}.${'xyzw'[e]}; }`,
            );
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

/** Records C[b] = A[b] · B[b] into `out` (a contiguous [batch, m, n] f32 storage). */
export function matmulInto(
  c: WebGPUContext,
  out: Storage,
  a: View,
  b: View,
  batch: number,
  m: number,
  k: number,
  n: number,
  config?: MatmulConfig,
): void {
  const cfg = config ?? chooseConfig(c.limits, batch, m, n);
  const variant: Variant = {
    cfg,
    a: aLayout(a, batch, m, k),
    b: bLayout(b, batch, k, n),
    aligned: m % cfg.bm === 0 && n % cfg.bn === 0 && k % cfg.bk === 0,
    cvec: n % 4 === 0,
  };
  const key = `mm|${cfg.bm}x${cfg.bn}x${cfg.bk}/${cfg.tm}x${cfg.tn}|${variant.a}${variant.b}|${variant.aligned ? 'al' : 'ck'}|${variant.cvec ? 'v' : 's'}`;
  const pipeline = c.pipeline(key, () => matmulShader(variant));
  const maxZ = c.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.ceil(n / cfg.bn);
  const gy = Math.ceil(m / cfg.bm);
  if (gx > maxZ || gy > maxZ) throw new Error(`webgpu: matmul of ${m}×${n} exceeds the workgroup grid`);
  for (let b0 = 0; b0 < batch; b0 += maxZ) {
    const words = new Uint32Array(WORDS);
    const ints = new Int32Array(words.buffer);
    words[W_M] = m;
    words[W_N] = n;
    words[W_K] = k;
    words[W_OA] = a.offset;
    words[W_OB] = b.offset;
    ints[W_BSA] = a.strides[0];
    ints[W_RSA] = a.strides[1];
    ints[W_CSA] = a.strides[2];
    ints[W_BSB] = b.strides[0];
    ints[W_RSB] = b.strides[1];
    ints[W_CSB] = b.strides[2];
    words[W_BATCH0] = b0;
    c.dispatch(
      pipeline,
      words,
      [bindingOf(out), bindingOf(a.storage), bindingOf(b.storage)],
      [gx, gy, Math.min(maxZ, batch - b0)],
    );
  }
}

export const matmul: GpuKernel<'matmul'> = (c, a, b, batch, m, k, n) => {
  c.check('matmul');
  if (batch * m * n === 0) return c.allocate('matmul', 'float32', batch * m * n);
  if (k === 0)
    return elementwise(c, {
      root: { kind: 'const', index: 0, dtype: 'float32' },
      inputs: [],
      consts: [0],
      shape: [batch * m * n],
    });
  const out = c.allocate('matmul', 'float32', batch * m * n);
  matmulInto(c, out, a, b, batch, m, k, n);
  return out;
};
