import { INDEX_OPS } from './context.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { MERGE_SUMS } from './softmax.js';
import { metaStruct, PRELUDE, s, u } from './wgsl.js';

/**
 * Cross-entropy per row in one dispatch: a workgroup per row, each invocation keeping a running
 * (max, Σ exp(x − max)) pair (the online softmax recurrence) and Σ x over its strided share of
 * the row; the pairs merge in a workgroup tree. The vocabulary (GPT-2's 50,257) need not be a
 * multiple of anything: each invocation strides by the workgroup size and stops at the row end.
 * With `writeGrad` a second pass over the row overwrites it with softmax − target (x is bound
 * read-write, since a buffer cannot be bound twice with one binding writable). A label out of
 * [0, cols) that is not ignoreIndex is recorded in the context's error-flag buffer and reported
 * as an OpError at the next read-back (the row's loss and gradient are NaN meanwhile).
 */

const WG = 256;

export const crossEntropyRows: GpuKernel<'crossEntropyRows'> = (c, x, labels, rows, cols, params) => {
  c.check('crossEntropyRows');
  const out = c.allocate('crossEntropyRows', 'float32', rows);
  if (rows === 0) return out;
  // words: rows, cols, x offset, labels offset, labels stride, ignoreIndex, 1 − ε, ε/cols
  const words = new Uint32Array(8);
  const ints = new Int32Array(words.buffer);
  const floats = new Float32Array(words.buffer);
  words[0] = rows;
  words[1] = cols;
  words[2] = x.offset;
  words[3] = labels.offset;
  ints[4] = labels.strides[0] ?? 0;
  ints[5] = params.ignoreIndex;
  floats[6] = 1 - params.labelSmoothing;
  floats[7] = params.labelSmoothing / cols;
  const write = params.writeGrad;
  const pipeline = c.pipeline(`crossEntropyRows|${write ? 'g' : 'n'}`, () => {
    const gradPass = write
      ? `for (var j = lid; j < cols; j += ${WG}u) {
    let at = base + j;
    let q = select(off, keep + off, i32(j) == t);
    x[at] = select(exp(x[at] - lse) - q, 0.0, ignored) + bad;
  }`
      : '';
    return `${PRELUDE}
${metaStruct(words.length)}
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;
@group(0) @binding(2) var<storage, ${write ? 'read_write' : 'read'}> x: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<i32>;
@group(0) @binding(4) var<storage, read_write> err: array<atomic<u32>, 4>;
var<workgroup> sm: array<f32, ${WG}>;
var<workgroup> ss: array<f32, ${WG}>;
var<workgroup> sx: array<f32, ${WG}>;
var<workgroup> sn: array<u32, ${WG}>;
${MERGE_SUMS}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= ${u(0)}) { return; }
  let cols = ${u(1)};
  let base = ${u(2)} + row * cols;
  let t = labels[i32(${u(3)}) + i32(row) * ${s(4)}];
  let ignored = t == ${s(5)};
  let keep = bitcast<f32>(${u(6)});
  let off = bitcast<f32>(${u(7)});
  var mx = -inf_f();
  var se = 0.0;
  var sumx = 0.0;
  var nan = 0u;
  for (var j = lid; j < cols; j += ${WG}u) {
    let v = x[base + j];
    if (is_nan(v)) { nan = 1u; }
    sumx += v;
    // one exp per element: rescale the sum when the max grows, else add the term
    if (v > mx) {
      se = se * exp(mx - v) + 1.0;
      mx = v;
    } else if (v != -inf_f()) {
      se += exp(v - mx);
    }
  }
  sm[lid] = mx;
  ss[lid] = se;
  sx[lid] = sumx;
  sn[lid] = nan;
  workgroupBarrier();
  for (var step = ${WG / 2}u; step >= 1u; step = step >> 1u) {
    if (lid < step) {
      let m1 = sm[lid];
      let m2 = sm[lid + step];
      let mn = max(m1, m2);
      ss[lid] = merge_s(m1, ss[lid], m2, ss[lid + step], mn);
      sm[lid] = mn;
      sx[lid] = sx[lid] + sx[lid + step];
      sn[lid] = sn[lid] | sn[lid + step];
    }
    workgroupBarrier();
  }
  let inRange = t >= 0 && u32(t) < cols;
  // NaN in the row, or a label out of [0, cols) that is not ignored: the row's loss (and gradient) is NaN
  let bad = select(0.0, nan_f(), !ignored && (sn[0] != 0u || !inRange));
  let lse = sm[0] + log(ss[0]);
  if (lid == 0u) {
    if (!ignored && !inRange && atomicAdd(&err[0], 1u) == 0u) {
      atomicStore(&err[1], ${INDEX_OPS.indexOf('crossEntropyRows') + 1}u);
      atomicStore(&err[2], bitcast<u32>(t));
      atomicStore(&err[3], cols);
    }
    let xt = x[base + u32(select(0, t, inRange))];
    loss[row] = select(lse - keep * xt - off * sx[0], 0.0, ignored) + bad;
  }
  workgroupBarrier();
  ${gradPass}
}`;
  });
  c.dispatch(
    pipeline,
    words,
    [bindingOf(out), bindingOf(x.storage), bindingOf(labels.storage), { buffer: c.errorFlag, size: 16 }],
    c.grid(rows),
  );
  return out;
};
