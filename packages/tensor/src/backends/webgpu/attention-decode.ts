import type { AttentionOutput, AttentionParams } from '../../backend.js';
import type { Storage, View } from '../../storage.js';
import { attentionWords, DIMS, maskBinding, maskKind, maskScore, viewBase, W } from './attention-shared.js';
import type { WebGPUContext } from './context.js';
import { bindingOf } from './program.js';
import { metaStruct, PRELUDE, u } from './wgsl.js';

/**
 * Decode attention (one query per head, L = 1, over a long KV cache): the tiled kernel would give
 * each (batch, head) one workgroup walking all S keys with 63 of its 64 query rows idle, so here
 * the keys are split in chunks of CH, a workgroup each (one key per invocation: score, chunk max
 * and sum by tree reductions, then p·v with one output column per invocation), and a second
 * dispatch merges the chunks' (max, sum, output) per head into the output and its logsumexp.
 */

const CH = 128;

function partialSource(e: number, ev: number, mask: 'bool' | 'float' | null, causal: boolean): string {
  return `${PRELUDE}
${metaStruct(W.words)}
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
${maskBinding(mask, 5)}
const E = ${e}u;
const EV = ${ev}u;
const NEG = -3.0e38;
var<workgroup> Qs: array<f32, ${e}>;
var<workgroup> Ps: array<f32, ${CH}>;
var<workgroup> Rd: array<f32, ${CH}>;
@compute @workgroup_size(${CH})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${DIMS}
  let chunks = (S + ${CH - 1}u) / ${CH}u;
  let bh = wid.y + wid.z * 65535u;
  if (bh >= ${u(W.b)} * H) { return; }
  let b = bh / H;
  let h = bh % H;
  let kh = h / G;
  ${viewBase('q', W.q, 'b', 'h')}
  ${viewBase('k', W.k, 'b', 'kh')}
  ${viewBase('v', W.v, 'b', 'kh')}
  ${mask ? viewBase('mask', W.mask, 'b', 'h') : ''}
  for (var d = lid; d < E; d += ${CH}u) { Qs[d] = q[q_base + i32(d) * q_d]; }
  workgroupBarrier();
  let row = 0u;
  let col = wid.x * ${CH}u + lid;
  var x = 0.0;
  if (col < S) {
    let kb = k_base + i32(col) * k_r;
    for (var d = 0u; d < E; d++) { x += Qs[d] * k[kb + i32(d) * k_d]; }
  }
  x *= scale;
  ${maskScore(mask, causal)}
  let sc = select(NEG, x, ok);
  Rd[lid] = sc;
  workgroupBarrier();
  for (var st = ${CH / 2}u; st > 0u; st = st >> 1u) {
    if (lid < st) { Rd[lid] = max(Rd[lid], Rd[lid + st]); }
    workgroupBarrier();
  }
  let m = Rd[0];
  workgroupBarrier();
  let p = select(exp(sc - m), 0.0, sc <= NEG);
  Ps[lid] = p;
  Rd[lid] = p;
  workgroupBarrier();
  for (var st = ${CH / 2}u; st > 0u; st = st >> 1u) {
    if (lid < st) { Rd[lid] = Rd[lid] + Rd[lid + st]; }
    workgroupBarrier();
  }
  let base = (bh * chunks + wid.x) * (EV + 2u);
  if (lid == 0u) {
    part[base] = m;
    part[base + 1u] = Rd[0];
  }
  let k0 = wid.x * ${CH}u;
  let n = min(${CH}u, S - k0);
  for (var c = lid; c < EV; c += ${CH}u) {
    var acc = 0.0;
    for (var j = 0u; j < n; j++) { acc += Ps[j] * v[v_base + i32(k0 + j) * v_r + i32(c) * v_d]; }
    part[base + 2u + c] = acc;
  }
}`;
}

function mergeSource(ev: number): string {
  return `${PRELUDE}
${metaStruct(W.words)}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> part: array<f32>;
const EV = ${ev}u;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let S = ${u(W.s)};
  let chunks = (S + ${CH - 1}u) / ${CH}u;
  let bh = wid.y + wid.z * 65535u;
  if (bh >= ${u(W.b)} * ${u(W.h)}) { return; }
  var mx = -3.0e38;
  for (var i = 0u; i < chunks; i++) { mx = max(mx, part[(bh * chunks + i) * (EV + 2u)]); }
  var sum = 0.0;
  for (var i = 0u; i < chunks; i++) {
    let at = (bh * chunks + i) * (EV + 2u);
    sum += part[at + 1u] * exp(part[at] - mx);
  }
  for (var c = lid; c < EV; c += 64u) {
    var acc = 0.0;
    for (var i = 0u; i < chunks; i++) {
      let at = (bh * chunks + i) * (EV + 2u);
      acc += part[at + 2u + c] * exp(part[at] - mx);
    }
    // no key left (all masked): NaN, as the softmax of a row of −∞
    out[bh * EV + c] = select(acc / sum, nan_f(), sum == 0.0);
  }
  if (lid == 0u) { lse[bh] = select(mx + log(sum), -inf_f(), sum == 0.0); }
}`;
}

/** Whether the split-key decode kernels take this call (one query row over more than one chunk). */
export function useDecode(q: View, k: View): boolean {
  return q.shape[2] === 1 && k.shape[2] > CH;
}

export function attentionDecode(
  c: WebGPUContext,
  q: View,
  k: View,
  v: View,
  mask: View | null,
  params: AttentionParams,
  out: Storage,
  lse: Storage | null,
): AttentionOutput {
  const [b, h, , e] = q.shape;
  const s = k.shape[2];
  const ev = v.shape[3];
  const bh = b * h;
  const chunks = Math.ceil(s / CH);
  const kind = maskKind(mask);
  const words = attentionWords(q, k, v, mask, params);
  const part = c.scratch('attention', bh * chunks * (ev + 2));
  const partBinding = { buffer: part, size: bh * chunks * (ev + 2) * 4 };
  const p1 = c.pipeline(`attentionDecode|${e}|${ev}|${kind}|${params.causal}`, () =>
    partialSource(e, ev, kind, params.causal),
  );
  const inputs = [bindingOf(q.storage), bindingOf(k.storage), bindingOf(v.storage)];
  if (mask) inputs.push(bindingOf(mask.storage));
  const grid = (x: number): [number, number, number] => [x, Math.min(bh, 65535), Math.ceil(bh / 65535)];
  c.dispatch(p1, words, [partBinding, ...inputs], grid(chunks));
  const lseScratch = lse ? null : c.scratch('attention', bh);
  const p2 = c.pipeline(`attentionDecodeMerge|${ev}`, () => mergeSource(ev));
  const lseBinding = lse ? bindingOf(lse) : { buffer: lseScratch!, size: bh * 4 };
  c.dispatch(p2, words, [bindingOf(out), lseBinding, partBinding], grid(1));
  c.release(part);
  if (lseScratch) c.release(lseScratch);
  return { out, lse };
}
