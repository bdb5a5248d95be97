import { attentionDecode, useDecode } from './attention-decode.js';
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
import { metaStruct, PRELUDE, u } from './wgsl.js';

/**
 * Flash-attention forward: a workgroup takes BQ query rows of one (batch, head), keeps their q
 * tile in workgroup memory, and walks the keys in tiles of BK: the BQ×BK scores as a register
 * micro-tile per thread (rows ty + TY·i, columns tx + TX·j), the online-softmax rescale of the
 * running max / sum / output accumulators, and p·v from a p tile in workgroup memory. Only the
 * output and each row's logsumexp reach global memory. Causal blocks stop at the block's last
 * row (decode, one query over a long cache, splits the keys instead: attention-decode.ts). The running sums are per thread (the columns it owns), merged once at the end: all threads
 * of a row share the row max, so their partial sums rescale alike.
 */

interface Tile {
  bq: number;
  bk: number;
  ty: number;
  tx: number;
}

/** Tiles by head dim, shrunk until they fit the device's workgroup memory. */
function tileFor(c: WebGPUContext, e: number, ev: number): Tile {
  let t: Tile = e <= 64 && ev <= 64 ? { bq: 64, bk: 32, ty: 16, tx: 16 } : { bq: 32, bk: 32, ty: 8, tx: 16 };
  const bytes = (x: Tile) => 4 * (e * x.bq + Math.max(e, ev) * x.bk + x.tx * 8 + x.bq * x.bk + x.bq * x.tx);
  while (bytes(t) > c.limits.maxComputeWorkgroupStorageSize && t.bq > 8)
    t = { ...t, bq: t.bq / 2, ty: t.ty / 2 };
  return t;
}

function source(e: number, ev: number, t: Tile, mask: 'bool' | 'float' | null, causal: boolean): string {
  const { bq, bk, ty, tx } = t;
  const rt = bq / ty;
  const ct = bk / tx;
  const oc = Math.ceil(ev / tx);
  const nt = ty * tx;
  const kvSize = Math.max(e, ev) * bk + tx * oc;
  return `${PRELUDE}
${metaStruct(W.words)}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
${maskBinding(mask, 6)}
const E = ${e}u;
const EV = ${ev}u;
const NEG = -3.0e38;
var<workgroup> Qs: array<f32, ${e * bq}>;
var<workgroup> KV: array<f32, ${kvSize}>;
var<workgroup> Ps: array<f32, ${bq * bk}>;
var<workgroup> Red: array<f32, ${bq * tx}>;
@compute @workgroup_size(${nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${DIMS}
  let bh = wid.y + wid.z * 65535u;
  if (bh >= ${u(W.b)} * H) { return; }
  let b = bh / H;
  let h = bh % H;
  let kh = h / G;
  let q0 = wid.x * ${bq}u;
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  ${viewBase('q', W.q, 'b', 'h')}
  ${viewBase('k', W.k, 'b', 'kh')}
  ${viewBase('v', W.v, 'b', 'kh')}
  ${mask ? viewBase('mask', W.mask, 'b', 'h') : ''}
  for (var idx = lid; idx < ${bq}u * E; idx += ${nt}u) {
    let r = idx / E;
    let d = idx % E;
    let row = q0 + r;
    var x = 0.0;
    if (row < L) { x = q[q_base + i32(row) * q_r + i32(d) * q_d]; }
    Qs[d * ${bq}u + r] = x;
  }
  var m: array<f32, ${rt}>;
  var l: array<f32, ${rt}>;
  var o: array<array<f32, ${oc}>, ${rt}>;
  for (var i = 0u; i < ${rt}u; i++) {
    m[i] = NEG;
    l[i] = 0.0;
    for (var c = 0u; c < ${oc}u; c++) { o[i][c] = 0.0; }
  }
  var kvEnd = S;
  ${causal ? `kvEnd = min(S, q0 + ${bq}u);` : ''}
  for (var k0 = 0u; k0 < kvEnd; k0 += ${bk}u) {
    workgroupBarrier();
    for (var idx = lid; idx < ${bk}u * E; idx += ${nt}u) {
      let j = idx / E;
      let d = idx % E;
      var x = 0.0;
      if (k0 + j < S) { x = k[k_base + i32(k0 + j) * k_r + i32(d) * k_d]; }
      KV[d * ${bk}u + j] = x;
    }
    workgroupBarrier();
    var sc: array<array<f32, ${ct}>, ${rt}>;
    for (var i = 0u; i < ${rt}u; i++) { for (var j = 0u; j < ${ct}u; j++) { sc[i][j] = 0.0; } }
    for (var d = 0u; d < E; d++) {
      var qv: array<f32, ${rt}>;
      for (var i = 0u; i < ${rt}u; i++) { qv[i] = Qs[d * ${bq}u + ty + ${ty}u * i]; }
      for (var j = 0u; j < ${ct}u; j++) {
        let kv = KV[d * ${bk}u + tx + ${tx}u * j];
        for (var i = 0u; i < ${rt}u; i++) { sc[i][j] += qv[i] * kv; }
      }
    }
    var alpha: array<f32, ${rt}>;
    for (var i = 0u; i < ${rt}u; i++) {
      let row = q0 + ty + ${ty}u * i;
      var tm = NEG;
      for (var j = 0u; j < ${ct}u; j++) {
        let col = k0 + tx + ${tx}u * j;
        var x = sc[i][j] * scale;
        ${maskScore(mask, causal)}
        sc[i][j] = select(NEG, x, ok);
        tm = max(tm, sc[i][j]);
      }
      Red[(ty + ${ty}u * i) * ${tx}u + tx] = tm;
    }
    workgroupBarrier();
    for (var i = 0u; i < ${rt}u; i++) {
      let r = ty + ${ty}u * i;
      var mn = m[i];
      for (var t = 0u; t < ${tx}u; t++) { mn = max(mn, Red[r * ${tx}u + t]); }
      alpha[i] = exp(m[i] - mn);
      m[i] = mn;
      var ls = 0.0;
      for (var j = 0u; j < ${ct}u; j++) {
        let x = sc[i][j];
        let p = select(exp(x - mn), 0.0, x <= NEG);
        ls += p;
        Ps[r * ${bk}u + tx + ${tx}u * j] = p;
      }
      l[i] = l[i] * alpha[i] + ls;
    }
    workgroupBarrier();
    for (var idx = lid; idx < ${bk}u * EV; idx += ${nt}u) {
      let j = idx / EV;
      let d = idx % EV;
      var x = 0.0;
      if (k0 + j < S) { x = v[v_base + i32(k0 + j) * v_r + i32(d) * v_d]; }
      KV[j * EV + d] = x;
    }
    workgroupBarrier();
    for (var i = 0u; i < ${rt}u; i++) {
      for (var c = 0u; c < ${oc}u; c++) { o[i][c] *= alpha[i]; }
    }
    for (var j = 0u; j < ${bk}u; j++) {
      var pv: array<f32, ${rt}>;
      for (var i = 0u; i < ${rt}u; i++) { pv[i] = Ps[(ty + ${ty}u * i) * ${bk}u + j]; }
      for (var c = 0u; c < ${oc}u; c++) {
        let vv = KV[j * EV + tx + ${tx}u * c];
        for (var i = 0u; i < ${rt}u; i++) { o[i][c] += pv[i] * vv; }
      }
    }
  }
  workgroupBarrier();
  for (var i = 0u; i < ${rt}u; i++) { Red[(ty + ${ty}u * i) * ${tx}u + tx] = l[i]; }
  workgroupBarrier();
  for (var i = 0u; i < ${rt}u; i++) {
    let r = ty + ${ty}u * i;
    let row = q0 + r;
    if (row >= L) { continue; }
    var sum = 0.0;
    for (var t = 0u; t < ${tx}u; t++) { sum += Red[r * ${tx}u + t]; }
    let orow = (bh * L + row) * EV;
    for (var c = 0u; c < ${oc}u; c++) {
      let col = tx + ${tx}u * c;
      // no key left (all masked): NaN, as the softmax of a row of −∞
      if (col < EV) { out[orow + col] = select(o[i][c] / sum, nan_f(), sum == 0.0); }
    }
    if (tx == 0u) { lse[bh * L + row] = select(m[i] + log(sum), -inf_f(), sum == 0.0); }
  }
}`;
}

export const attention: GpuKernel<'attention'> = (c, q, k, v, mask, params) => {
  c.check('attention');
  const [b, h, l, e] = q.shape;
  const ev = v.shape[3];
  checkHeadDims('scaledDotProductAttention', e, ev);
  const rows = b * h * l;
  const out = c.allocate('attention', 'float32', rows * ev);
  const lse = params.lse ? c.allocate('attention', 'float32', rows) : null;
  if (rows > 0 && useDecode(q, k)) return attentionDecode(c, q, k, v, mask, params, out, lse);
  const lseScratch = lse ? null : c.scratch('attention', Math.max(1, rows));
  if (rows === 0) {
    if (lseScratch) c.release(lseScratch);
    return { out, lse };
  }
  const kind = maskKind(mask);
  const tile = tileFor(c, e, ev);
  const key = `attention|${e}|${ev}|${kind}|${params.causal}|${tile.bq}`;
  const pipeline = c.pipeline(key, () => source(e, ev, tile, kind, params.causal));
  const words = attentionWords(q, k, v, mask, params);
  const bindings = [
    bindingOf(out),
    lse ? bindingOf(lse) : { buffer: lseScratch!, size: Math.max(1, rows) * 4 },
    bindingOf(q.storage),
    bindingOf(k.storage),
    bindingOf(v.storage),
  ];
  if (mask) bindings.push(bindingOf(mask.storage));
  const bh = b * h;
  c.dispatch(pipeline, words, bindings, [Math.ceil(l / tile.bq), Math.min(bh, 65535), Math.ceil(bh / 65535)]);
  if (lseScratch) c.release(lseScratch);
  return { out, lse };
};
