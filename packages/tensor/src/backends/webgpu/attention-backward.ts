import { PHILOX_WGSL } from '../../philox.js';
import type { Storage } from '../../storage.js';
import { atomicAdd4, atomicBinding, zeroSource } from './attention-atomic.js';
import { dsumGroups, dsumPlan, dsumSource } from './attention-dsum.js';
import {
  accumulate,
  attentionKernels,
  attentionWords,
  checkHeadDims,
  DIMS,
  each,
  keepBytes,
  keepDecl,
  keepFactor,
  keepFill,
  loadRows,
  maskBinding,
  maskKind,
  maskScore,
  pickTile,
  psDecl,
  rowVec4,
  scores,
  type Tile,
  toPs,
  viewBase,
  W,
} from './attention-shared.js';
import type { WebGPUContext } from './context.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { metaStruct, PRELUDE, s, u } from './wgsl.js';

/**
 * Flash-attention backward in the FlashAttention-2 order, three dispatches and no [L, S] matrix
 * in global memory:
 * 1. D = rowsum(grad·out) into a scratch buffer (attention-dsum.ts);
 * 2. dk, dv: a workgroup per key block of one (batch, kv head) keeps its k and v tiles and walks
 *    the query tiles of every query head of its group (GQA sums inside, no atomics), recomputing
 *    p = exp(s − lse) and ds = p·(grad·vᵀ − D) per tile;
 * 3. dq: a workgroup per query block walks the key tiles and accumulates ds·k.
 * Rows with lse = −∞ (every key masked) give NaN in p, as the composed graph's softmax does, and
 * ds = 0 where the key is causal- or bool-masked (the gradient of the composed `where`).
 *
 * Both kernels come from one generator: a workgroup holds BR "stationary" rows (k and v for dk/dv,
 * q and grad for dq) and streams BC rows of the other side per step. Tiles sit in workgroup memory
 * row-major as vec4 with an odd number of vec4 per row, so the rows a warp reads at once fall in
 * distinct banks; each thread owns RT stationary rows (ty + TY·i) × CT streamed rows (tx + TX·j)
 * of the scores, and RT rows × 4-column groups (tx + TX·c) of the accumulators. On the H200 the
 * 32×32 scalar tiles this replaced spent 6 workgroup loads per 8 multiply-adds and stored their
 * transposed tiles with 32-way bank conflicts (54 + 44 ms of a 197 ms GPT-2 step).
 * Causal blocks wholly below the diagonal (and inside L, S, without a mask) skip the mask tests.
 * With dropout, the forward's mask is regenerated per block (keepFill: the workgroup's keep bits,
 * keepFactor: z = kept ? 1/(1 − p) : 0): the p tile holds z·p (dv = (z∘p)ᵀ·grad) and ds = p·(z·(grad·vᵀ) − D).
 * Other layouts stay selectable (attention-shared.ts `setAttentionKernels`), each measured slower
 * on the H200 (docs/perf.md, session 6): dq folded into the dk/dv pass by atomic adds (no dq
 * kernel: WGSL has no float atomics, and the compare-exchange loops cost more than the kernel they
 * replace), GQA heads split over workgroups, and tiles outside the candidate list.
 */

function tileBytes(e: number, ev: number, t: Tile, dropout: boolean): number {
  const rows = (t.br + t.bc) * (rowVec4(e) + rowVec4(ev)) * 16;
  // keep bits: dk/dv blocks are bc queries × br keys, dq blocks br queries × bc keys
  const keep = dropout ? Math.max(keepBytes(t.bc, t.br), keepBytes(t.br, t.bc)) : 0;
  return rows + t.br * rowVec4(t.bc) * 16 + 8 * t.bc + keep;
}

/**
 * Candidate tiles, fastest first: 64 stationary × 16 streamed rows on 128 threads (4 × 2 scores
 * and 4 rows × 8 accumulator columns per thread at head dim 64: 46.4 KiB, inside the H200's
 * 48 KiB), then smaller ones for larger heads or less workgroup memory (lavapipe: 32 KiB).
 */
const TILES: Tile[] = [
  { br: 64, bc: 16, ty: 16, tx: 8 },
  { br: 32, bc: 16, ty: 16, tx: 8 },
  { br: 16, bc: 16, ty: 16, tx: 8 },
  { br: 16, bc: 8, ty: 16, tx: 8 },
  { br: 8, bc: 8, ty: 8, tx: 8 },
  { br: 8, bc: 4, ty: 8, tx: 4 },
  { br: 4, bc: 4, ty: 4, tx: 4 },
];

function tileFor(c: WebGPUContext, e: number, ev: number, dropout: boolean): Tile {
  const k = attentionKernels();
  return pickTile(c, TILES, k.backwardTile, k.backwardShape, (t) => tileBytes(e, ev, t, dropout));
}

/** An output binding: plain f32 stores, or atomic adds (`add_<name>`, attention-atomic.ts). */
interface Out {
  name: string;
  atomic: boolean;
}

const outDecl = (o: Out, binding: number) =>
  o.atomic
    ? `${atomicBinding(o.name, binding)}\n${atomicAdd4(o.name)}`
    : `@group(0) @binding(${binding}) var<storage, read_write> ${o.name}: array<f32>;`;

const HEADER = (mask: 'bool' | 'float' | null, outs: Out[], dropout: boolean) => `${PRELUDE}
${dropout ? PHILOX_WGSL : ''}
${metaStruct(W.words)}
${outs.map((o, i) => outDecl(o, i + 1)).join('\n')}
@group(0) @binding(${outs.length + 1}) var<storage, read> q: array<f32>;
@group(0) @binding(${outs.length + 2}) var<storage, read> k: array<f32>;
@group(0) @binding(${outs.length + 3}) var<storage, read> v: array<f32>;
@group(0) @binding(${outs.length + 4}) var<storage, read> gout: array<f32>;
@group(0) @binding(${outs.length + 5}) var<storage, read> lse: array<f32>;
@group(0) @binding(${outs.length + 6}) var<storage, read> dsum: array<f32>;
${maskBinding(mask, outs.length + 7)}`;

/** WGSL writing the thread's accumulator rows (times `mul`) to `dst` rows `r0 + ty + TY·i`. */
function store(
  dst: string,
  acc: string,
  dim: number,
  t: Tile,
  r0: string,
  limit: string,
  base: string,
  mul: string,
  atomic = false,
): string {
  const rt = t.br / t.ty;
  const cc = Math.ceil(Math.ceil(dim / 4) / t.tx);
  const put = atomic
    ? `if (col < ${dim}u) { add_${dst}((${base} + row) * ${dim}u + col, val, min(4u, ${dim}u - col)); }`
    : each(
        4,
        (w) => `if (col + ${w}u < ${dim}u) { ${dst}[(${base} + row) * ${dim}u + col + ${w}u] = val[${w}]; }`,
        '\n        ',
      );
  return each(
    rt,
    (i) => `{
    let row = ${r0} + ty + ${t.ty * i}u;
    if (row < ${limit}) {
      ${each(
        cc,
        (c) => `{
        let col = (tx + ${t.tx * c}u) * 4u;
        let val = ${acc}[${i * cc + c}]${mul};
        ${put}
      }`,
        '\n      ',
      )}
    }
  }`,
    '\n  ',
  );
}

/**
 * WGSL turning the scores sc and dp = grad·vᵀ into p (kept in sc) and ds (kept in dp) for the
 * thread's micro-tile; `fast` is a block with no masked or out-of-range element.
 */
function probs(
  mask: 'bool' | 'float' | null,
  causal: boolean,
  dropout: boolean,
  t: Tile,
  at: (i: number, j: number) => { row: string; col: string; lse: string; d: string; keep: string },
  fast: string,
): string {
  const rt = t.br / t.ty;
  const ct = t.bc / t.tx;
  const slow = each(rt * ct, (n) => {
    const { row, col, lse: m, d, keep } = at(Math.floor(n / ct), n % ct);
    return `{
        let row = ${row};
        let col = ${col};
        var x = sc[${n}] * scale;
        ${maskScore(mask, causal)}
        let m = ${m};
        var p = select(0.0, exp(x - m), ok);
        // a row with no key (lse −∞): NaN as the composed softmax; its where-masked scores still get 0
        if (bitcast<u32>(m) == 0xff800000u && row < L) { p = nan_f(); }
        ${dropout ? `let z = ${keep};` : 'let z = 1.0;'}
        sc[${n}] = p * z;
        dp[${n}] = select(p * (z * dp[${n}] - ${d}), 0.0, hard);
      }`;
  });
  const quick = each(rt * ct, (n) => {
    const { lse: m, d, keep } = at(Math.floor(n / ct), n % ct);
    if (!dropout)
      return `{ let p = exp(sc[${n}] * scale - ${m}); sc[${n}] = p; dp[${n}] = p * (dp[${n}] - ${d}); }`;
    return `{ let p = exp(sc[${n}] * scale - ${m}); let z = ${keep}; sc[${n}] = p * z; dp[${n}] = p * (z * dp[${n}] - ${d}); }`;
  });
  if (mask) return slow;
  return `if (${fast}) {
      ${quick.split('\n').join('\n      ')}
    } else {
      ${slow}
    }`;
}

function tiles(e: number, ev: number, t: Tile, a: string, b: string, cName: string, d: string): string {
  return `var<workgroup> ${a}s: array<vec4<f32>, ${t.br * rowVec4(e)}>;
var<workgroup> ${b}s: array<vec4<f32>, ${t.br * rowVec4(ev)}>;
var<workgroup> ${cName}s: array<vec4<f32>, ${t.bc * rowVec4(e)}>;
var<workgroup> ${d}s: array<vec4<f32>, ${t.bc * rowVec4(ev)}>;
${psDecl(t)}`;
}

/** How the dk/dv pass is laid out (see `attentionKernels`). */
interface KvPlan {
  /** dq += dsᵀ·k in the same pass, atomically (no dq kernel) */
  fuseDq: boolean;
  /** one query head a workgroup, dk and dv added atomically into the kv head (GQA) */
  splitHeads: boolean;
  /** ds in its own tile (Ds) beside p's: both written before one barrier, not one after the other */
  ownDs: boolean;
}

/**
 * WGSL adding the streamed block's dq rows q0 + [0, BC), scale · dsᵀ·k over the BR stationary
 * keys, into dq (ds is in the tile `ds`, k in Ks), atomically: the key blocks of a query run in different
 * workgroups. Where the threads divide the block's vec4 evenly (head dim 64: 16 queries × 16 vec4
 * on 128 threads) a thread owns one vec4 column of NQ query rows, so one k load serves NQ rows;
 * otherwise one vec4 of one row per pass.
 */
function dqPartial(e: number, t: Tile, ds: string): string {
  const e4 = Math.ceil(e / 4);
  const nt = t.ty * t.tx;
  const vp = rowVec4(t.bc);
  const add = (qc: string, acc: string) =>
    `if (q0 + ${qc} < L) { add_dq((bh * L + q0 + ${qc}) * ${e}u + g * 4u, ${acc} * scale, min(4u, ${e}u - g * 4u)); }`;
  const nq = (t.bc * e4) / nt;
  if (nt % e4 === 0 && Number.isInteger(nq) && nq <= 4) {
    const rows = nt / e4; // query rows a pass: qb, qb + rows, …
    return `{
        let g = lid % ${e4}u;
        let qb = lid / ${e4}u;
        ${each(nq, (j) => `var acc${j} = vec4<f32>(0.0);`, '\n        ')}
        for (var r = 0u; r < ${t.br}u; r++) {
          let kr = Ks[r * ${rowVec4(e)}u + g];
          ${each(nq, (j) => `acc${j} += ${ds}[r * ${4 * vp}u + qb + ${rows * j}u] * kr;`, '\n          ')}
        }
        ${each(nq, (j) => add(`qb + ${rows * j}u`, `acc${j}`), '\n        ')}
      }`;
  }
  return `for (var o = lid; o < ${t.bc * e4}u; o += ${nt}u) {
        let qc = o / ${e4}u;
        let g = o % ${e4}u;
        var acc = vec4<f32>(0.0);
        for (var r = 0u; r < ${t.br}u; r++) { acc += ${ds}[r * ${4 * vp}u + qc] * Ks[r * ${rowVec4(e)}u + g]; }
        ${add('qc', 'acc')}
      }`;
}

function kvSource(
  e: number,
  ev: number,
  t: Tile,
  mask: 'bool' | 'float' | null,
  causal: boolean,
  dropout: boolean,
  plan: KvPlan,
): string {
  const { br, bc, ty, tx } = t;
  const nt = ty * tx;
  const rt = br / ty;
  const ct = bc / tx;
  const cce = Math.ceil(Math.ceil(e / 4) / tx);
  const ccv = Math.ceil(Math.ceil(ev / 4) / tx);
  // the block is clear when every query is at or after every key, all in range
  const fast = `q0 + ${bc}u <= L && k0 + ${br}u <= S${causal ? ` && q0 + 1u >= k0 + ${br}u` : ''}`;
  const outs: Out[] = [
    { name: 'dk', atomic: plan.splitHeads },
    { name: 'dv', atomic: plan.splitHeads },
  ];
  if (plan.fuseDq) outs.push({ name: 'dq', atomic: true });
  const ds = plan.ownDs ? 'Ds' : 'Ps';
  // split: the grid's x is (batch, query head) and the workgroup walks that head only
  const heads = plan.splitHeads
    ? `let bq = wid.x + wid.z * 65535u;
  if (bq >= ${u(W.b)} * H) { return; }
  let b = bq / H;
  let kh = (bq % H) / G;
  let hFirst = (bq % H) % G;
  let hEnd = hFirst + 1u;
  let bkv = b * HKV + kh;`
    : `let bkv = wid.x + wid.z * 65535u;
  if (bkv >= ${u(W.b)} * HKV) { return; }
  let b = bkv / HKV;
  let kh = bkv % HKV;
  let hFirst = 0u;
  let hEnd = G;`;
  return `${HEADER(mask, outs, dropout)}
${tiles(e, ev, t, 'K', 'V', 'Q', 'G')}
${plan.ownDs ? psDecl(t, 'Ds') : ''}
${dropout ? keepDecl(bc, br) : ''}
var<workgroup> Lc: array<f32, ${bc}>;
var<workgroup> Dc: array<f32, ${bc}>;
@compute @workgroup_size(${nt})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  ${DIMS}
  let HKV = ${u(W.hkv)};
  ${heads}
  // block-major grid: the first key blocks (the most queries under a causal mask) go first
  let k0 = wid.y * ${br}u;
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  ${viewBase('k', W.k, 'b', 'kh')}
  ${viewBase('v', W.v, 'b', 'kh')}
  ${loadRows('Ks', 'k', br, e, 'k0', 'S', nt)}
  ${loadRows('Vs', 'v', br, ev, 'k0', 'S', nt)}
  var dka: array<vec4<f32>, ${rt * cce}>;
  var dva: array<vec4<f32>, ${rt * ccv}>;
  var qStart = 0u;
  ${causal ? `qStart = (k0 / ${bc}u) * ${bc}u;` : ''}
  for (var hh = hFirst; hh < hEnd; hh++) {
    let h = kh * G + hh;
    let bh = b * H + h;
    ${viewBase('q', W.q, 'b', 'h')}
    ${viewBase('gout', W.grad, 'b', 'h')}
    ${mask ? viewBase('mask', W.mask, 'b', 'h') : ''}
    let lse_base = ${s(W.lse + 4)} + i32(b) * ${s(W.lse)} + i32(h) * ${s(W.lse + 1)};
    let lse_r = ${s(W.lse + 2)};
    for (var q0 = qStart; q0 < L; q0 += ${bc}u) {
      workgroupBarrier();
      ${loadRows('Qs', 'q', bc, e, 'q0', 'L', nt)}
      ${loadRows('Gs', 'gout', bc, ev, 'q0', 'L', nt)}
      for (var r = lid; r < ${bc}u; r += ${nt}u) {
        let row = min(q0 + r, L - 1u);
        Lc[r] = lse[lse_base + i32(row) * lse_r];
        Dc[r] = dsum[bh * L + row];
      }
      ${dropout ? keepFill(bc, br, 'bh', 'q0', 'k0', nt) : ''}
      workgroupBarrier();
      var sc = array<f32, ${rt * ct}>();
      var dp = array<f32, ${rt * ct}>();
      ${scores('sc', 'Ks', 'Qs', e, t)}
      ${scores('dp', 'Vs', 'Gs', ev, t)}
      ${each(ct, (j) => `let lc${j} = Lc[tx + ${tx * j}u];\n      let dc${j} = Dc[tx + ${tx * j}u];`, '\n      ')}
      ${probs(mask, causal, dropout, t, (i, j) => ({ row: `q0 + tx + ${tx * j}u`, col: `k0 + ty + ${ty * i}u`, lse: `lc${j}`, d: `dc${j}`, keep: keepFactor(br, `tx + ${tx * j}u`, `ty + ${ty * i}u`) }), fast)}
      ${toPs('sc', t)}
      ${plan.ownDs ? '' : `workgroupBarrier();\n      ${accumulate('dva', 'Gs', ev, t)}\n      workgroupBarrier();`}
      ${toPs('dp', t, ds)}
      workgroupBarrier();
      ${plan.ownDs ? accumulate('dva', 'Gs', ev, t) : ''}
      ${accumulate('dka', 'Qs', e, t, ds)}
      ${plan.fuseDq ? dqPartial(e, t, ds) : ''}
    }
  }
  ${store('dk', 'dka', e, t, 'k0', 'S', 'bkv * S', ' * scale', plan.splitHeads)}
  ${store('dv', 'dva', ev, t, 'k0', 'S', 'bkv * S', '', plan.splitHeads)}
}`;
}

function qSource(
  e: number,
  ev: number,
  t: Tile,
  mask: 'bool' | 'float' | null,
  causal: boolean,
  dropout: boolean,
): string {
  const { br, bc, ty, tx } = t;
  const nt = ty * tx;
  const rt = br / ty;
  const ct = bc / tx;
  const cce = Math.ceil(Math.ceil(e / 4) / tx);
  // the block is clear when its last key is at or before its first query, all in range
  const fast = `q0 + ${br}u <= L && k0 + ${bc}u <= S${causal ? ` && k0 + ${bc}u <= q0 + 1u` : ''}`;
  return `${HEADER(mask, [{ name: 'dq', atomic: false }], dropout)}
${tiles(e, ev, t, 'Q', 'G', 'K', 'V')}
${dropout ? keepDecl(br, bc) : ''}
@compute @workgroup_size(${nt})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  ${DIMS}
  let bh = wid.x + wid.z * 65535u;
  if (bh >= ${u(W.b)} * H) { return; }
  let b = bh / H;
  let h = bh % H;
  let kh = h / G;
  // the last query blocks (the most keys under a causal mask) first: the grid's tail is short work
  let q0 = (nwg.y - 1u - wid.y) * ${br}u;
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  ${viewBase('q', W.q, 'b', 'h')}
  ${viewBase('gout', W.grad, 'b', 'h')}
  ${viewBase('k', W.k, 'b', 'kh')}
  ${viewBase('v', W.v, 'b', 'kh')}
  ${mask ? viewBase('mask', W.mask, 'b', 'h') : ''}
  let lse_base = ${s(W.lse + 4)} + i32(b) * ${s(W.lse)} + i32(h) * ${s(W.lse + 1)};
  let lse_r = ${s(W.lse + 2)};
  ${loadRows('Qs', 'q', br, e, 'q0', 'L', nt)}
  ${loadRows('Gs', 'gout', br, ev, 'q0', 'L', nt)}
  ${each(rt, (i) => `let row${i} = min(q0 + ty + ${ty * i}u, L - 1u);\n  let lr${i} = lse[lse_base + i32(row${i}) * lse_r];\n  let dr${i} = dsum[bh * L + row${i}];`, '\n  ')}
  var dqa: array<vec4<f32>, ${rt * cce}>;
  var kvEnd = S;
  ${causal ? `kvEnd = min(S, q0 + ${br}u);` : ''}
  for (var k0 = 0u; k0 < kvEnd; k0 += ${bc}u) {
    workgroupBarrier();
    ${loadRows('Ks', 'k', bc, e, 'k0', 'S', nt)}
    ${loadRows('Vs', 'v', bc, ev, 'k0', 'S', nt)}
    ${dropout ? keepFill(br, bc, 'bh', 'q0', 'k0', nt) : ''}
    workgroupBarrier();
    var sc = array<f32, ${rt * ct}>();
    var dp = array<f32, ${rt * ct}>();
    ${scores('sc', 'Qs', 'Ks', e, t)}
    ${scores('dp', 'Gs', 'Vs', ev, t)}
    ${probs(mask, causal, dropout, t, (i, j) => ({ row: `q0 + ty + ${ty * i}u`, col: `k0 + tx + ${tx * j}u`, lse: `lr${i}`, d: `dr${i}`, keep: keepFactor(bc, `ty + ${ty * i}u`, `tx + ${tx * j}u`) }), fast)}
    ${toPs('dp', t)}
    workgroupBarrier();
    ${accumulate('dqa', 'Ks', e, t)}
  }
  ${store('dq', 'dqa', e, t, 'q0', 'L', 'bh * L', ' * scale')}
}`;
}

export const attentionBackward: GpuKernel<'attentionBackward'> = (
  c,
  q,
  k,
  v,
  mask,
  out,
  grad,
  lse,
  params,
) => {
  c.check('attentionBackward');
  const [b, h, l, e] = q.shape;
  const [, hkv, sl] = k.shape;
  const ev = v.shape[3];
  checkHeadDims('scaledDotProductAttention', e, ev);
  const dq = c.allocate('attentionBackward', 'float32', b * h * l * e);
  const dk = c.allocate('attentionBackward', 'float32', b * hkv * sl * e);
  const dv = c.allocate('attentionBackward', 'float32', b * hkv * sl * ev);
  const rows = b * h * l;
  if (rows === 0 || sl === 0) return { dq, dk, dv };
  const kind = maskKind(mask);
  const words = attentionWords(q, k, v, mask, params, { out, grad, lse });
  words[W.words - 1] = ev;
  const dsum = c.scratch('attentionBackward', rows);
  const dBinding = { buffer: dsum, size: rows * 4 };
  const { lanes, subgroups } = dsumPlan(c);
  const dPipe = c.pipeline(`attentionD|${lanes}|${subgroups}`, () => dsumSource(lanes, subgroups));
  c.dispatch(
    dPipe,
    words,
    [dBinding, bindingOf(out.storage), bindingOf(grad.storage)],
    c.grid(dsumGroups(rows, lanes)),
  );
  const tile = tileFor(c, e, ev, Boolean(params.dropout));
  const dropout = Boolean(params.dropout);
  const key = `${e}|${ev}|${kind}|${params.causal}|${dropout}|${tile.br}|${tile.bc}|${tile.ty}|${tile.tx}`;
  const inputs = [
    bindingOf(q.storage),
    bindingOf(k.storage),
    bindingOf(v.storage),
    bindingOf(grad.storage),
    bindingOf(lse.storage),
    dBinding,
  ];
  if (mask) inputs.push(bindingOf(mask.storage));
  const choice = attentionKernels();
  const dsBytes = 16 * tile.br * rowVec4(tile.bc);
  const plan: KvPlan = {
    fuseDq: choice.dq === 'fused',
    splitHeads: choice.gqa === 'split' && h > hkv,
    ownDs:
      choice.dsTile === 'own' &&
      tileBytes(e, ev, tile, dropout) + dsBytes <= c.limits.maxComputeWorkgroupStorageSize,
  };
  // the atomic adds start from zero
  const zero = (buffer: Storage<GPUBuffer>) => {
    if (buffer.size === 0) return;
    const pipe = c.pipeline('attentionZero', zeroSource);
    c.dispatch(
      pipe,
      new Uint32Array([buffer.size]),
      [bindingOf(buffer)],
      c.grid(Math.ceil(buffer.size / 256)),
    );
  };
  if (plan.fuseDq) zero(dq);
  if (plan.splitHeads) {
    zero(dk);
    zero(dv);
  }
  const kvKey = `attentionDkv|${key}|${plan.fuseDq}|${plan.splitHeads}|${plan.ownDs}`;
  const kvPipe = c.pipeline(kvKey, () => kvSource(e, ev, tile, kind, params.causal, dropout, plan));
  const groups = plan.splitHeads ? b * h : b * hkv;
  c.dispatch(
    kvPipe,
    words,
    [bindingOf(dk), bindingOf(dv), ...(plan.fuseDq ? [bindingOf(dq)] : []), ...inputs],
    [Math.min(groups, 65535), Math.ceil(sl / tile.br), Math.ceil(groups / 65535)],
  );
  if (!plan.fuseDq) {
    const qPipe = c.pipeline(`attentionDq|${key}`, () => qSource(e, ev, tile, kind, params.causal, dropout));
    const bh = b * h;
    c.dispatch(
      qPipe,
      words,
      [bindingOf(dq), ...inputs],
      [Math.min(bh, 65535), Math.ceil(l / tile.br), Math.ceil(bh / 65535)],
    );
  }
  c.release(dsum);
  return { dq, dk, dv };
};
