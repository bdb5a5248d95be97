import {
  attentionWords,
  checkHeadDims,
  DIMS,
  maskBinding,
  maskKind,
  maskScore,
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
 * 1. D = rowsum(grad·out), one invocation per query row, into a scratch buffer;
 * 2. dk, dv: a workgroup per key block of one (batch, kv head) keeps its k and v tiles and walks
 *    the query tiles of every query head of its group (GQA sums inside, no atomics), recomputing
 *    p = exp(s − lse) and ds = p·(grad·vᵀ − D) per tile;
 * 3. dq: a workgroup per query block walks the key tiles and accumulates ds·k.
 * Rows with lse = −∞ (every key masked) give NaN in p, as the composed graph's softmax does, and
 * ds = 0 where the key is causal- or bool-masked (the gradient of the composed `where`).
 */

interface Tile {
  br: number;
  bc: number;
  ty: number;
  tx: number;
}

function tileFor(c: WebGPUContext, e: number, ev: number): Tile {
  let t: Tile = e <= 64 && ev <= 64 ? { br: 32, bc: 32, ty: 8, tx: 16 } : { br: 16, bc: 16, ty: 8, tx: 8 };
  const oc = (n: number, x: Tile) => Math.ceil(n / x.tx) * x.tx;
  const bytes = (x: Tile) =>
    4 * ((e + ev) * x.br + (oc(e, x) + oc(ev, x)) * x.bc + x.br * x.bc + 2 * x.bc + x.br);
  while (bytes(t) > c.limits.maxComputeWorkgroupStorageSize && t.br > 8) {
    t = { br: t.br / 2, bc: t.bc / 2, ty: t.ty / 2, tx: t.tx / 2 };
  }
  return t;
}

const HEADER = (mask: 'bool' | 'float' | null, outs: string[]) => `${PRELUDE}
${metaStruct(W.words)}
${outs.map((o, i) => `@group(0) @binding(${i + 1}) var<storage, read_write> ${o}: array<f32>;`).join('\n')}
@group(0) @binding(${outs.length + 1}) var<storage, read> q: array<f32>;
@group(0) @binding(${outs.length + 2}) var<storage, read> k: array<f32>;
@group(0) @binding(${outs.length + 3}) var<storage, read> v: array<f32>;
@group(0) @binding(${outs.length + 4}) var<storage, read> gout: array<f32>;
@group(0) @binding(${outs.length + 5}) var<storage, read> lse: array<f32>;
@group(0) @binding(${outs.length + 6}) var<storage, read> dsum: array<f32>;
${maskBinding(mask, outs.length + 7)}`;

/** WGSL loading rows [r0, r0 + n) of a view into `dst[d * n + r]` (0 past `limit`). */
function loadT(
  dst: string,
  src: string,
  n: number,
  dim: string,
  r0: string,
  limit: string,
  nt: number,
): string {
  return `for (var idx = lid; idx < ${n}u * ${dim}; idx += ${nt}u) {
      let r = idx / ${dim};
      let d = idx % ${dim};
      var x = 0.0;
      if (${r0} + r < ${limit}) { x = ${src}[${src}_base + i32(${r0} + r) * ${src}_r + i32(d) * ${src}_d]; }
      ${dst}[d * ${n}u + r] = x;
    }`;
}

/** p and ds of the thread's micro-tile, from s (scores) and dp (grad·vᵀ) sums; row = query, col = key. */
function probs(
  mask: 'bool' | 'float' | null,
  causal: boolean,
  rowExpr: string,
  colExpr: string,
  lseExpr: string,
  dExpr: string,
): string {
  return `for (var i = 0u; i < RT; i++) {
      for (var j = 0u; j < CT; j++) {
        let row = ${rowExpr};
        let col = ${colExpr};
        var x = sc[i][j] * scale;
        ${maskScore(mask, causal)}
        let m = ${lseExpr};
        var p = select(0.0, exp(x - m), ok);
        // a row with no key (lse −∞): NaN as the composed softmax; its where-masked scores still get 0
        if (bitcast<u32>(m) == 0xff800000u && row < L) { p = nan_f(); }
        pr[i][j] = p;
        ds[i][j] = select(p * (dp[i][j] - ${dExpr}), 0.0, hard);
      }
    }`;
}

function kvSource(e: number, ev: number, t: Tile, mask: 'bool' | 'float' | null, causal: boolean): string {
  const { br, bc, ty, tx } = t;
  const nt = ty * tx;
  const ock = Math.ceil(e / tx);
  const ocv = Math.ceil(ev / tx);
  return `${HEADER(mask, ['dk', 'dv'])}
const E = ${e}u;
const EV = ${ev}u;
const RT = ${br / ty}u;
const CT = ${bc / tx}u;
var<workgroup> Kr: array<f32, ${e * br}>;
var<workgroup> Vr: array<f32, ${ev * br}>;
var<workgroup> Qc: array<f32, ${ock * tx * bc}>;
var<workgroup> Gc: array<f32, ${ocv * tx * bc}>;
var<workgroup> Pt: array<f32, ${br * bc}>;
var<workgroup> Lc: array<f32, ${bc}>;
var<workgroup> Dc: array<f32, ${bc}>;
@compute @workgroup_size(${nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${DIMS}
  let HKV = ${u(W.hkv)};
  let bkv = wid.y + wid.z * 65535u;
  if (bkv >= ${u(W.b)} * HKV) { return; }
  let b = bkv / HKV;
  let kh = bkv % HKV;
  let k0 = wid.x * ${br}u;
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  ${viewBase('k', W.k, 'b', 'kh')}
  ${viewBase('v', W.v, 'b', 'kh')}
  ${loadT('Kr', 'k', br, 'E', 'k0', 'S', nt)}
  ${loadT('Vr', 'v', br, 'EV', 'k0', 'S', nt)}
  var dka: array<array<f32, ${ock}>, RT>;
  var dva: array<array<f32, ${ocv}>, RT>;
  for (var i = 0u; i < RT; i++) {
    for (var c = 0u; c < ${ock}u; c++) { dka[i][c] = 0.0; }
    for (var c = 0u; c < ${ocv}u; c++) { dva[i][c] = 0.0; }
  }
  var qStart = 0u;
  ${causal ? `qStart = (k0 / ${bc}u) * ${bc}u;` : ''}
  for (var hh = 0u; hh < G; hh++) {
    let h = kh * G + hh;
    ${viewBase('q', W.q, 'b', 'h')}
    ${viewBase('gout', W.grad, 'b', 'h')}
    ${mask ? viewBase('mask', W.mask, 'b', 'h') : ''}
    let lse_base = ${s(W.lse + 4)} + i32(b) * ${s(W.lse)} + i32(h) * ${s(W.lse + 1)};
    let lse_r = ${s(W.lse + 2)};
    for (var q0 = qStart; q0 < L; q0 += ${bc}u) {
      workgroupBarrier();
      ${loadT('Qc', 'q', bc, 'E', 'q0', 'L', nt)}
      ${loadT('Gc', 'gout', bc, 'EV', 'q0', 'L', nt)}
      for (var r = lid; r < ${bc}u; r += ${nt}u) {
        let row = min(q0 + r, L - 1u);
        Lc[r] = lse[lse_base + i32(row) * lse_r];
        Dc[r] = dsum[(b * H + h) * L + row];
      }
      workgroupBarrier();
      var sc: array<array<f32, CT>, RT>;
      var dp: array<array<f32, CT>, RT>;
      var pr: array<array<f32, CT>, RT>;
      var ds: array<array<f32, CT>, RT>;
      for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { sc[i][j] = 0.0; dp[i][j] = 0.0; } }
      // operands into registers first: RT + CT workgroup loads per RT·CT multiply-adds
      for (var d = 0u; d < E; d++) {
        var a: array<f32, RT>;
        var c2: array<f32, CT>;
        for (var i = 0u; i < RT; i++) { a[i] = Kr[d * ${br}u + ty + ${ty}u * i]; }
        for (var j = 0u; j < CT; j++) { c2[j] = Qc[d * ${bc}u + tx + ${tx}u * j]; }
        for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { sc[i][j] += a[i] * c2[j]; } }
      }
      for (var d = 0u; d < EV; d++) {
        var a: array<f32, RT>;
        var c2: array<f32, CT>;
        for (var i = 0u; i < RT; i++) { a[i] = Vr[d * ${br}u + ty + ${ty}u * i]; }
        for (var j = 0u; j < CT; j++) { c2[j] = Gc[d * ${bc}u + tx + ${tx}u * j]; }
        for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { dp[i][j] += a[i] * c2[j]; } }
      }
      ${probs(mask, causal, `q0 + tx + ${tx}u * j`, `k0 + ty + ${ty}u * i`, `Lc[tx + ${tx}u * j]`, `Dc[tx + ${tx}u * j]`)}
      for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { Pt[(ty + ${ty}u * i) * ${bc}u + tx + ${tx}u * j] = pr[i][j]; } }
      workgroupBarrier();
      for (var j = 0u; j < ${bc}u; j++) {
        var pt: array<f32, RT>;
        for (var i = 0u; i < RT; i++) { pt[i] = Pt[(ty + ${ty}u * i) * ${bc}u + j]; }
        for (var c = 0u; c < ${ocv}u; c++) {
          let g = Gc[(tx + ${tx}u * c) * ${bc}u + j];
          for (var i = 0u; i < RT; i++) { dva[i][c] += pt[i] * g; }
        }
      }
      workgroupBarrier();
      for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { Pt[(ty + ${ty}u * i) * ${bc}u + tx + ${tx}u * j] = ds[i][j]; } }
      workgroupBarrier();
      for (var j = 0u; j < ${bc}u; j++) {
        var pt: array<f32, RT>;
        for (var i = 0u; i < RT; i++) { pt[i] = Pt[(ty + ${ty}u * i) * ${bc}u + j]; }
        for (var c = 0u; c < ${ock}u; c++) {
          let qv = Qc[(tx + ${tx}u * c) * ${bc}u + j];
          for (var i = 0u; i < RT; i++) { dka[i][c] += pt[i] * qv; }
        }
      }
    }
  }
  for (var i = 0u; i < RT; i++) {
    let key = k0 + ty + ${ty}u * i;
    if (key >= S) { continue; }
    for (var c = 0u; c < ${ock}u; c++) {
      let col = tx + ${tx}u * c;
      if (col < E) { dk[(bkv * S + key) * E + col] = dka[i][c] * scale; }
    }
    for (var c = 0u; c < ${ocv}u; c++) {
      let col = tx + ${tx}u * c;
      if (col < EV) { dv[(bkv * S + key) * EV + col] = dva[i][c]; }
    }
  }
}`;
}

function qSource(e: number, ev: number, t: Tile, mask: 'bool' | 'float' | null, causal: boolean): string {
  const { br, bc, ty, tx } = t;
  const nt = ty * tx;
  const ock = Math.ceil(e / tx);
  return `${HEADER(mask, ['dq'])}
const E = ${e}u;
const EV = ${ev}u;
const RT = ${br / ty}u;
const CT = ${bc / tx}u;
var<workgroup> Qr: array<f32, ${e * br}>;
var<workgroup> Gr: array<f32, ${ev * br}>;
var<workgroup> Kc: array<f32, ${ock * tx * bc}>;
var<workgroup> Vc: array<f32, ${ev * bc}>;
var<workgroup> Pt: array<f32, ${br * bc}>;
@compute @workgroup_size(${nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${DIMS}
  let bh = wid.y + wid.z * 65535u;
  if (bh >= ${u(W.b)} * H) { return; }
  let b = bh / H;
  let h = bh % H;
  let kh = h / G;
  let q0 = wid.x * ${br}u;
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  ${viewBase('q', W.q, 'b', 'h')}
  ${viewBase('gout', W.grad, 'b', 'h')}
  ${viewBase('k', W.k, 'b', 'kh')}
  ${viewBase('v', W.v, 'b', 'kh')}
  ${mask ? viewBase('mask', W.mask, 'b', 'h') : ''}
  let lse_base = ${s(W.lse + 4)} + i32(b) * ${s(W.lse)} + i32(h) * ${s(W.lse + 1)};
  let lse_r = ${s(W.lse + 2)};
  ${loadT('Qr', 'q', br, 'E', 'q0', 'L', nt)}
  ${loadT('Gr', 'gout', br, 'EV', 'q0', 'L', nt)}
  var lr: array<f32, RT>;
  var dr: array<f32, RT>;
  for (var i = 0u; i < RT; i++) {
    let row = min(q0 + ty + ${ty}u * i, L - 1u);
    lr[i] = lse[lse_base + i32(row) * lse_r];
    dr[i] = dsum[bh * L + row];
  }
  var dqa: array<array<f32, ${ock}>, RT>;
  for (var i = 0u; i < RT; i++) { for (var c = 0u; c < ${ock}u; c++) { dqa[i][c] = 0.0; } }
  var kvEnd = S;
  ${causal ? `kvEnd = min(S, q0 + ${br}u);` : ''}
  for (var k0 = 0u; k0 < kvEnd; k0 += ${bc}u) {
    workgroupBarrier();
    ${loadT('Kc', 'k', bc, 'E', 'k0', 'S', nt)}
    ${loadT('Vc', 'v', bc, 'EV', 'k0', 'S', nt)}
    workgroupBarrier();
    var sc: array<array<f32, CT>, RT>;
    var dp: array<array<f32, CT>, RT>;
    var pr: array<array<f32, CT>, RT>;
    var ds: array<array<f32, CT>, RT>;
    for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { sc[i][j] = 0.0; dp[i][j] = 0.0; } }
    for (var d = 0u; d < E; d++) {
      var a: array<f32, RT>;
      var c2: array<f32, CT>;
      for (var i = 0u; i < RT; i++) { a[i] = Qr[d * ${br}u + ty + ${ty}u * i]; }
      for (var j = 0u; j < CT; j++) { c2[j] = Kc[d * ${bc}u + tx + ${tx}u * j]; }
      for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { sc[i][j] += a[i] * c2[j]; } }
    }
    for (var d = 0u; d < EV; d++) {
      var a: array<f32, RT>;
      var c2: array<f32, CT>;
      for (var i = 0u; i < RT; i++) { a[i] = Gr[d * ${br}u + ty + ${ty}u * i]; }
      for (var j = 0u; j < CT; j++) { c2[j] = Vc[d * ${bc}u + tx + ${tx}u * j]; }
      for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { dp[i][j] += a[i] * c2[j]; } }
    }
    ${probs(mask, causal, `q0 + ty + ${ty}u * i`, `k0 + tx + ${tx}u * j`, 'lr[i]', 'dr[i]')}
    for (var i = 0u; i < RT; i++) { for (var j = 0u; j < CT; j++) { Pt[(ty + ${ty}u * i) * ${bc}u + tx + ${tx}u * j] = ds[i][j]; } }
    workgroupBarrier();
    for (var j = 0u; j < ${bc}u; j++) {
      var pt: array<f32, RT>;
      for (var i = 0u; i < RT; i++) { pt[i] = Pt[(ty + ${ty}u * i) * ${bc}u + j]; }
      for (var c = 0u; c < ${ock}u; c++) {
        let kv = Kc[(tx + ${tx}u * c) * ${bc}u + j];
        for (var i = 0u; i < RT; i++) { dqa[i][c] += pt[i] * kv; }
      }
    }
  }
  for (var i = 0u; i < RT; i++) {
    let row = q0 + ty + ${ty}u * i;
    if (row >= L) { continue; }
    for (var c = 0u; c < ${ock}u; c++) {
      let col = tx + ${tx}u * c;
      if (col < E) { dq[(bh * L + row) * E + col] = dqa[i][c] * scale; }
    }
  }
}`;
}

function dSource(): string {
  return `${metaStruct(W.words)}
@group(0) @binding(1) var<storage, read_write> dsum: array<f32>;
@group(0) @binding(2) var<storage, read> outv: array<f32>;
@group(0) @binding(3) var<storage, read> gout: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let L = ${u(W.l)};
  let H = ${u(W.h)};
  let EV = ${u(W.words - 1)};
  if (idx >= ${u(W.b)} * H * L) { return; }
  let row = idx % L;
  let bh = idx / L;
  let b = bh / H;
  let h = bh % H;
  ${viewBase('outv', W.out, 'b', 'h')}
  ${viewBase('gout', W.grad, 'b', 'h')}
  var acc = 0.0;
  for (var c = 0u; c < EV; c++) {
    acc += outv[outv_base + i32(row) * outv_r + i32(c) * outv_d] * gout[gout_base + i32(row) * gout_r + i32(c) * gout_d];
  }
  dsum[idx] = acc;
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
  const dPipe = c.pipeline('attentionD', dSource);
  c.dispatch(
    dPipe,
    words,
    [dBinding, bindingOf(out.storage), bindingOf(grad.storage)],
    c.grid(Math.ceil(rows / 256)),
  );
  const tile = tileFor(c, e, ev);
  const key = `${e}|${ev}|${kind}|${params.causal}|${tile.br}`;
  const inputs = [
    bindingOf(q.storage),
    bindingOf(k.storage),
    bindingOf(v.storage),
    bindingOf(grad.storage),
    bindingOf(lse.storage),
    dBinding,
  ];
  if (mask) inputs.push(bindingOf(mask.storage));
  const kvPipe = c.pipeline(`attentionDkv|${key}`, () => kvSource(e, ev, tile, kind, params.causal));
  const bkv = b * hkv;
  c.dispatch(
    kvPipe,
    words,
    [bindingOf(dk), bindingOf(dv), ...inputs],
    [Math.ceil(sl / tile.br), Math.min(bkv, 65535), Math.ceil(bkv / 65535)],
  );
  const qPipe = c.pipeline(`attentionDq|${key}`, () => qSource(e, ev, tile, kind, params.causal));
  const bh = b * h;
  c.dispatch(
    qPipe,
    words,
    [bindingOf(dq), ...inputs],
    [Math.ceil(l / tile.br), Math.min(bh, 65535), Math.ceil(bh / 65535)],
  );
  c.release(dsum);
  return { dq, dk, dv };
};
