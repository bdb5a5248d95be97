import { coalesce } from '../../shape.js';
import type { GpuKernel } from './kernel.js';
import {
  bindingOf,
  constBits,
  constDtypes,
  expressionCode,
  inputBindings,
  ONE_BITS,
  programKey,
} from './program.js';
import { metaStruct, PRELUDE, u, unravel, WGSL_TYPE } from './wgsl.js';

/**
 * Row softmax in one dispatch: a workgroup per row keeps a running (max, sum of exp(x − max))
 * pair per invocation over the row (the online softmax recurrence), merges the pairs in a tree,
 * then writes exp(x − max) / sum on a second read of the row (which the GPU's cache mostly
 * serves). The composite takes three kernels and reads the row three times from memory, plus
 * a write and read of exp(x − max). The input is an elementwise program, so a scale or a mask
 * before the softmax fuses into it.
 */

const WG = 256;

/**
 * WGSL `merge_s`: the online-softmax merge of two partial (max, Σ exp) pairs, shared by the
 * softmax and cross-entropy row kernels.
 */
export const MERGE_SUMS = `// merges (m2, s2) into (m1, s1): sums rescaled to the larger max; an all −∞ part adds nothing
fn merge_s(m1: f32, s1: f32, m2: f32, s2: f32, mx: f32) -> f32 {
  let a = select(s1 * exp(m1 - mx), 0.0, m1 == -inf_f());
  let b = select(s2 * exp(m2 - mx), 0.0, m2 == -inf_f());
  return a + b;
}`;

export const softmax: GpuKernel<'softmax'> = (c, x, rows, cols) => {
  c.check('softmax');
  const out = c.allocate('softmax', 'float32', rows * cols);
  if (rows === 0 || cols === 0) return out;
  const b = inputBindings(x);
  const k = x.inputs.length;
  const rowPart = coalesce(
    x.shape.slice(0, -1),
    x.inputs.map((v) => v.strides.slice(0, -1)),
  );
  const rk = rowPart.shape.length;
  const m = x.consts.length;
  // words: rows, cols, offsets[k], rowShape[rk], rowStrides[k][rk], colStrides[k], consts[m]
  const offAt = 2;
  const shapeAt = offAt + k;
  const rowStrideAt = Array.from({ length: k }, (_, i) => shapeAt + rk + i * rk);
  const colStrideAt = shapeAt + rk * (k + 1);
  const constAt = colStrideAt + k;
  const words = new Uint32Array(constAt + m + 1);
  words[constAt + m] = ONE_BITS;
  const ints = new Int32Array(words.buffer);
  words[0] = rows;
  words[1] = cols;
  for (let i = 0; i < k; i++) {
    const v = x.inputs[i];
    words[offAt + i] = v.offset;
    for (let d = 0; d < rk; d++) ints[rowStrideAt[i] + d] = rowPart.strides[i][d];
    ints[colStrideAt + i] = v.strides[v.strides.length - 1];
  }
  for (let d = 0; d < rk; d++) words[shapeAt + d] = rowPart.shape[d];
  const cd = constDtypes(x);
  for (let i = 0; i < m; i++) words[constAt + i] = constBits(x.consts[i], cd[i]);
  const key = `softmax|${programKey(x, b)}|r${rk}|m${m}`;
  const pipeline = c.pipeline(key, () => {
    const rowNames = x.inputs.map((_, i) => `ro${i}`);
    const rowOffset = unravel(
      'row',
      rk,
      shapeAt,
      rowNames,
      x.inputs.map((_, i) => `bitcast<i32>(${u(offAt + i)})`),
      rowStrideAt,
    );
    const loads = x.inputs
      .map((_, i) => `let x${i} = in${b.slot[i]}[ro${i} + i32(j) * bitcast<i32>(${u(colStrideAt + i)})];`)
      .join('\n    ');
    const value = `${loads}
    ${expressionCode(x.root, 'v', (i) => u(constAt + i), u(constAt + m))}`;
    const decls = b.storages
      .map(
        (st, j) => `@group(0) @binding(${j + 2}) var<storage, read> in${j}: array<${WGSL_TYPE[st.dtype]}>;`,
      )
      .join('\n');
    return `${PRELUDE}
${metaStruct(words.length)}
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
${decls}
var<workgroup> sm: array<f32, ${WG}>;
var<workgroup> ss: array<f32, ${WG}>;
var<workgroup> sn: array<u32, ${WG}>;
${MERGE_SUMS}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= ${u(0)}) { return; }
  let cols = ${u(1)};
  ${rowOffset}
  var mx = -inf_f();
  var s = 0.0;
  var nan = 0u;
  for (var j = lid; j < cols; j += ${WG}u) {
    ${value}
    if (is_nan(v)) { nan = 1u; }
    let mn = max(mx, v);
    if (mn != -inf_f()) {
      s = merge_s(mx, s, v, 1.0, mn);
      mx = mn;
    }
  }
  sm[lid] = mx;
  ss[lid] = s;
  sn[lid] = nan;
  workgroupBarrier();
  for (var step = ${WG / 2}u; step >= 1u; step = step >> 1u) {
    if (lid < step) {
      let m1 = sm[lid];
      let m2 = sm[lid + step];
      let mn = max(m1, m2);
      ss[lid] = merge_s(m1, ss[lid], m2, ss[lid + step], mn);
      sm[lid] = mn;
      sn[lid] = sn[lid] | sn[lid + step];
    }
    workgroupBarrier();
  }
  let rmax = sm[0];
  let rsum = ss[0];
  let rnan = sn[0] != 0u;
  for (var j = lid; j < cols; j += ${WG}u) {
    ${value}
    let q = exp(v - rmax) / rsum;
    y[row * cols + j] = select(q, nan_f(), rnan);
  }
}`;
  });
  c.dispatch(pipeline, words, [bindingOf(out), ...b.storages.map(bindingOf)], c.grid(rows));
  return out;
};
