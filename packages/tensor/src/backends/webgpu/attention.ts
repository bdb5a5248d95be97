import { PHILOX_WGSL } from '../../philox.js';
import { attentionDecode, useDecode } from './attention-decode.js';
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
  range,
  rowSubgroups,
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
import { metaStruct, PRELUDE, u } from './wgsl.js';

/**
 * Flash-attention forward: a workgroup takes BR query rows of one (batch, head), keeps their q
 * tile in workgroup memory, and walks the keys in tiles of BC: the BR×BC scores as a register
 * micro-tile per thread (rows ty + TY·i, keys tx + TX·j), the online-softmax rescale of the
 * running max / sum / output accumulators, and p·v from a p tile in workgroup memory. Only the
 * output and each row's logsumexp reach global memory. Causal blocks stop at the block's last
 * row, and blocks wholly below the diagonal skip the mask tests (decode, one query over a long
 * cache, splits the keys instead: attention-decode.ts). The running sums are per thread (the
 * columns it owns), merged once at the end: all threads of a row share the row max, so their
 * partial sums rescale alike (where the device has subgroups, a row's threads, consecutive lanes,
 * reduce its max and sum by xor shuffles instead of workgroup memory and a barrier a block: 0.333 →
 * 0.326 ms at T = 512 on the H200, rowSubgroups). With dropout, each probability is multiplied by its factor
 * (keepFactor: kept ? 1/(1 − p) : 0, from keep bits the workgroup computes per block) after it entered the running sum, so P·V accumulates the
 * dropped, scaled probabilities and the lse stays the undropped softmax's. Tiles are row-major vec4 as in the backward (attention-backward.ts);
 * on the H200 the transposed scalar tiles this replaced took 0.72 ms at T = 512 (B = 8, H = 12,
 * D = 64, causal) against SDPA's 0.16.
 */

/** 64 queries × 32 keys on 128 threads first (4 × 4 scores a thread, 45 KiB at head dim 64). */
const TILES: Tile[] = [
  { br: 64, bc: 32, ty: 16, tx: 8 },
  { br: 64, bc: 16, ty: 16, tx: 8 },
  { br: 32, bc: 16, ty: 16, tx: 8 },
  { br: 16, bc: 16, ty: 16, tx: 8 },
  { br: 16, bc: 8, ty: 16, tx: 8 },
  { br: 8, bc: 8, ty: 8, tx: 8 },
  { br: 8, bc: 4, ty: 8, tx: 4 },
  { br: 4, bc: 4, ty: 4, tx: 4 },
];

function tileBytes(e: number, ev: number, t: Tile, dropout: boolean): number {
  const vec4s = t.br * rowVec4(e) + t.bc * (rowVec4(e) + rowVec4(ev)) + t.br * rowVec4(t.bc);
  return 16 * vec4s + 4 * t.br * t.tx + (dropout ? keepBytes(t.br, t.bc) : 0);
}

function tileFor(c: WebGPUContext, e: number, ev: number, dropout: boolean): Tile {
  const k = attentionKernels();
  return pickTile(c, TILES, k.forwardTile, k.forwardShape, (t) => tileBytes(e, ev, t, dropout));
}

function source(
  e: number,
  ev: number,
  t: Tile,
  mask: 'bool' | 'float' | null,
  causal: boolean,
  dropout: boolean,
  subgroups: boolean,
): string {
  const { br, bc, ty, tx } = t;
  const rt = br / ty;
  const ct = bc / tx;
  const nt = ty * tx;
  // a row's TX threads are TX consecutive lanes of one subgroup: xor shuffles over 1, 2, … TX/2
  const lanes = range(Math.log2(tx)).map((i) => 1 << i);
  const ccv = Math.ceil(Math.ceil(ev / 4) / tx);
  // the block is clear when its last key is at or before its first query, all in range
  const fast = `q0 + ${br}u <= L && k0 + ${bc}u <= S${causal ? ` && k0 + ${bc}u <= q0 + 1u` : ''}`;
  const masked = each(
    rt * ct,
    (n) => `{
        let row = q0 + ty + ${ty * Math.floor(n / ct)}u;
        let col = k0 + tx + ${tx * (n % ct)}u;
        var x = sc[${n}] * scale;
        ${maskScore(mask, causal)}
        sc[${n}] = select(NEG, x, ok);
      }`,
    '\n      ',
  );
  const scaled = each(rt * ct, (n) => `sc[${n}] *= scale;`, '\n      ');
  // after the sums: the dropout factor of each probability of the micro-tile
  const drop = (i: number) =>
    dropout
      ? each(
          ct,
          (j) => `sc[${i * ct + j}] *= ${keepFactor(bc, `ty + ${ty * i}u`, `tx + ${tx * j}u`)};`,
          '\n      ',
        )
      : '';
  return `${subgroups ? 'enable subgroups;' : ''}
${PRELUDE}
${dropout ? PHILOX_WGSL : ''}
${metaStruct(W.words)}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
${maskBinding(mask, 6)}
const NEG = -3.0e38;
var<workgroup> Qs: array<vec4<f32>, ${br * rowVec4(e)}>;
var<workgroup> Ks: array<vec4<f32>, ${bc * rowVec4(e)}>;
var<workgroup> Vs: array<vec4<f32>, ${bc * rowVec4(ev)}>;
${psDecl(t)}
${subgroups ? '' : `var<workgroup> Red: array<f32, ${br * tx}>;`}
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
  ${viewBase('k', W.k, 'b', 'kh')}
  ${viewBase('v', W.v, 'b', 'kh')}
  ${mask ? viewBase('mask', W.mask, 'b', 'h') : ''}
  ${loadRows('Qs', 'q', br, e, 'q0', 'L', nt)}
  var m = array<f32, ${rt}>(${each(rt, () => 'NEG', ', ')});
  var l = array<f32, ${rt}>();
  var o = array<vec4<f32>, ${rt * ccv}>();
  var kvEnd = S;
  ${causal ? `kvEnd = min(S, q0 + ${br}u);` : ''}
  for (var k0 = 0u; k0 < kvEnd; k0 += ${bc}u) {
    workgroupBarrier();
    ${loadRows('Ks', 'k', bc, e, 'k0', 'S', nt)}
    ${loadRows('Vs', 'v', bc, ev, 'k0', 'S', nt)}
    ${dropout ? keepFill(br, bc, 'bh', 'q0', 'k0', nt) : ''}
    workgroupBarrier();
    // explicit zeros: lavapipe kept a loop-body \`var sc: array<…>;\` from the previous iteration
    var sc = array<f32, ${rt * ct}>();
    ${scores('sc', 'Qs', 'Ks', e, t)}
    ${mask ? masked : `if (${fast}) {\n      ${scaled}\n    } else {\n      ${masked}\n    }`}
    ${
      subgroups
        ? ''
        : `${each(rt, (i) => `Red[(ty + ${ty * i}u) * ${tx}u + tx] = ${range(ct).reduce((a, j) => `max(${a}, sc[${i * ct + j}])`, 'NEG')};`, '\n    ')}
    workgroupBarrier();`
    }
    ${each(
      rt,
      (i) => `{
      ${subgroups ? `var mx = ${range(ct).reduce((a, j) => `max(${a}, sc[${i * ct + j}])`, 'NEG')};` : ''}
      ${subgroups ? lanes.map((m) => `mx = max(mx, subgroupShuffleXor(mx, ${m}u));`).join(' ') : ''}
      var mn = m[${i}];
      ${subgroups ? 'mn = max(mn, mx);' : `for (var t = 0u; t < ${tx}u; t++) { mn = max(mn, Red[(ty + ${ty * i}u) * ${tx}u + t]); }`}
      let alpha = exp(m[${i}] - mn);
      m[${i}] = mn;
      var ls = 0.0;
      ${each(ct, (j) => `{ let x = sc[${i * ct + j}]; let p = select(exp(x - mn), 0.0, x <= NEG); sc[${i * ct + j}] = p; ls += p; }`, '\n      ')}
      l[${i}] = l[${i}] * alpha + ls;
      ${drop(i)}
      ${each(ccv, (c) => `o[${i * ccv + c}] *= alpha;`, '\n      ')}
    }`,
      '\n    ',
    )}
    ${toPs('sc', t)}
    workgroupBarrier();
    ${accumulate('o', 'Vs', ev, t)}
  }
  ${
    subgroups
      ? ''
      : `workgroupBarrier();
  ${each(rt, (i) => `Red[(ty + ${ty * i}u) * ${tx}u + tx] = l[${i}];`, '\n  ')}
  workgroupBarrier();`
  }
  ${each(
    rt,
    (i) => `{
    let row = q0 + ty + ${ty * i}u;
    var sum = 0.0;
    ${
      subgroups
        ? `sum = l[${i}];
    ${lanes.map((m) => `sum += subgroupShuffleXor(sum, ${m}u);`).join(' ')}`
        : `for (var t = 0u; t < ${tx}u; t++) { sum += Red[(ty + ${ty * i}u) * ${tx}u + t]; }`
    }
    if (row < L) {
      let orow = (bh * L + row) * ${ev}u;
      ${each(
        ccv,
        (c) => `{
        let col = (tx + ${tx * c}u) * 4u;
        // no key left (all masked): NaN, as the softmax of a row of −∞
        let val = select(o[${i * ccv + c}] / sum, vec4<f32>(nan_f()), sum == 0.0);
        ${each(4, (w) => `if (col + ${w}u < ${ev}u) { out[orow + col + ${w}u] = val[${w}]; }`, '\n        ')}
      }`,
        '\n      ',
      )}
      if (tx == 0u) { lse[bh * L + row] = select(m[${i}] + log(sum), -inf_f(), sum == 0.0); }
    }
  }`,
    '\n  ',
  )}
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
  // decode (one query over a long cache) splits the keys and applies no dropout: inference only
  if (rows > 0 && !params.dropout && useDecode(q, k))
    return attentionDecode(c, q, k, v, mask, params, out, lse);
  const lseScratch = lse ? null : c.scratch('attention', Math.max(1, rows));
  if (rows === 0) {
    if (lseScratch) c.release(lseScratch);
    return { out, lse };
  }
  const kind = maskKind(mask);
  const dropout = Boolean(params.dropout);
  const tile = tileFor(c, e, ev, dropout);
  const subgroups = rowSubgroups(c, tile);
  const key = `attention|${e}|${ev}|${kind}|${params.causal}|${dropout}|${tile.br}|${tile.bc}|${tile.ty}|${tile.tx}|${subgroups}`;
  const pipeline = c.pipeline(key, () => source(e, ev, tile, kind, params.causal, dropout, subgroups));
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
  c.dispatch(pipeline, words, bindings, [Math.min(bh, 65535), Math.ceil(l / tile.br), Math.ceil(bh / 65535)]);
  if (lseScratch) c.release(lseScratch);
  return { out, lse };
};
