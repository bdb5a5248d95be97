import type { ReduceOp } from '../../backend.js';
import type { DType } from '../../dtype.js';
import { type ElementwiseProgram, loadProgram } from '../../expr/program.js';
import { Storage } from '../../storage.js';
import type { WebGPUContext } from './context.js';
import { elementwise } from './elementwise.js';
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
import { coalesce, MAIN_ARGS, metaStruct, PRELUDE, u, unravel, WGSL_TYPE } from './wgsl.js';

const RWG = 256;
/** Rows shorter than this are reduced by one invocation each; longer ones by a workgroup. */
const ROW_PER_THREAD_BELOW = 128;
/** A long row of a short tensor is cut into chunks of this many elements (two passes). */
const CHUNK = 8192;

function identity(op: ReduceOp, t: string): string {
  const isMax = op === 'max' || op === 'argmax';
  if (op === 'sum') return `${t}(0)`;
  if (op === 'prod') return `${t}(1)`;
  if (t === 'f32') return isMax ? '-inf_f()' : 'inf_f()';
  if (t === 'i32') return isMax ? 'bitcast<i32>(0x80000000u)' : '2147483647i';
  return isMax ? '0u' : '0xffffffffu';
}

/** WGSL that folds value `v` (index `j`) into the accumulator `acc` (and `ai`). */
function foldSerial(op: ReduceOp, t: string): string {
  const nan = t === 'f32';
  switch (op) {
    case 'sum':
      return nan
        ? 'let yk = v - comp; let tk = acc + yk; comp = (tk - acc) - yk; acc = tk;'
        : 'acc = acc + v;';
    case 'prod':
      return 'acc = acc * v;';
    case 'max':
    case 'min': {
      const cmp = op === 'max' ? 'v > acc' : 'v < acc';
      return nan ? `if (!is_nan(acc) && (is_nan(v) || ${cmp})) { acc = v; }` : `if (${cmp}) { acc = v; }`;
    }
    case 'argmax':
    case 'argmin': {
      const cmp = op === 'argmax' ? 'v > acc' : 'v < acc';
      return nan
        ? `if (ai == 0xffffffffu || (!is_nan(acc) && (is_nan(v) || ${cmp}))) { acc = v; ai = j; }`
        : `if (ai == 0xffffffffu || ${cmp}) { acc = v; ai = j; }`;
    }
  }
}

/** WGSL combining shared slots `a` ← `b` in the tree reduction. */
function foldTree(op: ReduceOp, t: string): string {
  const nan = t === 'f32';
  switch (op) {
    case 'sum':
      return 'sv[a] = sv[a] + sv[b];';
    case 'prod':
      return 'sv[a] = sv[a] * sv[b];';
    case 'max':
    case 'min': {
      const cmp = op === 'max' ? 'vb > va' : 'vb < va';
      return nan
        ? `let va = sv[a]; let vb = sv[b]; if (!is_nan(va) && (is_nan(vb) || ${cmp})) { sv[a] = vb; }`
        : `let va = sv[a]; let vb = sv[b]; if (${cmp}) { sv[a] = vb; }`;
    }
    case 'argmax':
    case 'argmin': {
      const cmp = op === 'argmax' ? 'vb > va' : 'vb < va';
      const better = nan
        ? `(!is_nan(va) && (is_nan(vb) || ${cmp})) || ((va == vb || (is_nan(va) && is_nan(vb))) && si[b] < si[a])`
        : `${cmp} || (va == vb && si[b] < si[a])`;
      return `let va = sv[a]; let vb = sv[b]; if (${better}) { sv[a] = vb; si[a] = si[b]; }`;
    }
  }
}

/**
 * One pass: each of `outer * chunks` outputs reduces up to `chunkLen` of its row's `inner` elements
 * of the program's values (shape [...kept, ...reduced], coalesced per part across its inputs).
 */
function reducePass(
  c: WebGPUContext,
  op: ReduceOp,
  x: ElementwiseProgram,
  split: number,
  outer: number,
  inner: number,
  chunks: number,
  outDtype: DType,
  into?: Storage,
): Storage {
  const inDtype = x.root.dtype;
  const inT = WGSL_TYPE[inDtype];
  const isArg = op === 'argmax' || op === 'argmin';
  const accT = isArg || op === 'max' || op === 'min' ? inT : WGSL_TYPE[outDtype];
  const outT = WGSL_TYPE[outDtype];
  const b = inputBindings(x);
  const k = x.inputs.length;
  const kept = coalesce(
    x.shape.slice(0, split),
    x.inputs.map((v) => v.strides.slice(0, split)),
  );
  const red = coalesce(
    x.shape.slice(split),
    x.inputs.map((v) => v.strides.slice(split)),
  );
  const rk = kept.shape.length;
  const rr = red.shape.length;
  const chunkLen = Math.ceil(inner / chunks);
  const m = x.consts.length;
  // words: outer, inner, chunks, chunkLen, offsets[k], keptShape, keptStrides[k], redShape,
  // redStrides[k], constants[m]
  const offAt = 4;
  const keptAt = offAt + k;
  const keptStrideAt = Array.from({ length: k }, (_, i) => keptAt + rk + i * rk);
  const redAt = keptAt + rk * (k + 1);
  const redStrideAt = Array.from({ length: k }, (_, i) => redAt + rr + i * rr);
  const constAt = redAt + rr * (k + 1);
  const words = new Uint32Array(constAt + m + 1);
  words[constAt + m] = ONE_BITS;
  const ints = new Int32Array(words.buffer);
  words.set([outer, inner, chunks, chunkLen]);
  for (let i = 0; i < k; i++) {
    words[offAt + i] = x.inputs[i].offset;
    for (let d = 0; d < rk; d++) ints[keptStrideAt[i] + d] = kept.strides[i][d];
    for (let d = 0; d < rr; d++) ints[redStrideAt[i] + d] = red.strides[i][d];
  }
  for (let d = 0; d < rk; d++) words[keptAt + d] = kept.shape[d];
  for (let d = 0; d < rr; d++) words[redAt + d] = red.shape[d];
  const cd = constDtypes(x);
  for (let i = 0; i < m; i++) words[constAt + i] = constBits(x.consts[i], cd[i]);
  const perThread = inner < ROW_PER_THREAD_BELOW && chunks === 1;
  const rows = outer * chunks;
  const out = into ?? c.allocate(op, outDtype, rows);
  const nan = accT === 'f32';
  const conv = (v: string) => (accT === inT ? v : `${accT}(${v})`);
  const key = `red|${op}|${programKey(x, b)}>${outDtype}|k${rk}|r${rr}|m${m}|${perThread ? 't' : 'w'}`;
  const pipeline = c.pipeline(key, () => {
    const rowNames = x.inputs.map((_, i) => `ro${i}`);
    const elemNames = x.inputs.map((_, i) => `eo${i}`);
    const rowOffset = unravel(
      'row',
      rk,
      keptAt,
      rowNames,
      x.inputs.map((_, i) => `bitcast<i32>(${u(offAt + i)})`),
      keptStrideAt,
    );
    const elemOffset = unravel('j', rr, redAt, elemNames, rowNames, redStrideAt);
    const loads = x.inputs.map((_, i) => `let x${i} = in${b.slot[i]}[eo${i}];`).join('\n    ');
    const value = `${loads}
    ${expressionCode(x.root, 'xv_', (i) => u(constAt + i), u(constAt + m))}
    let v = ${conv('xv_')};`;
    const init = `var acc: ${accT} = ${identity(op, accT)};${op === 'sum' && nan ? ` var comp: ${accT} = 0.0;` : ''}${isArg ? ' var ai: u32 = 0xffffffffu;' : ''}`;
    const store = isArg ? 'y[o] = i32(ai);' : `y[o] = ${accT === outT ? 'acc' : `${outT}(acc)`};`;
    const head = `${PRELUDE}
${metaStruct(words.length)}
@group(0) @binding(1) var<storage, read_write> y: array<${outT}>;
${b.storages.map((st, j) => `@group(0) @binding(${j + 2}) var<storage, read> in${j}: array<${WGSL_TYPE[st.dtype]}>;`).join('\n')}`;
    if (perThread) {
      return `${head}
@compute @workgroup_size(${RWG})
fn main(${MAIN_ARGS}) {
  let o = gid.x + gid.y * nwg.x * ${RWG}u;
  if (o >= ${u(0)}) { return; }
  let row = o;
  ${rowOffset}
  ${init}
  for (var j: u32 = 0u; j < ${u(1)}; j++) {
    ${elemOffset}
    ${value}
    ${foldSerial(op, accT)}
  }
  ${store}
}`;
    }
    const tree: string[] = [];
    for (let step = RWG / 2; step >= 1; step >>= 1) {
      tree.push(`if (lid < ${step}u) { let a = lid; let b = lid + ${step}u; ${foldTree(op, accT)} }`);
      tree.push('workgroupBarrier();');
    }
    return `${head}
var<workgroup> sv: array<${accT}, ${RWG}>;
${isArg ? `var<workgroup> si: array<u32, ${RWG}>;` : ''}
@compute @workgroup_size(${RWG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  if (o >= ${u(0)} * ${u(2)}) { return; }
  let row = o / ${u(2)};
  let chunk = o % ${u(2)};
  ${rowOffset}
  ${init}
  let j0 = chunk * ${u(3)};
  let j1 = min(${u(1)}, j0 + ${u(3)});
  for (var j = j0 + lid; j < j1; j += ${RWG}u) {
    ${elemOffset}
    ${value}
    ${foldSerial(op, accT)}
  }
  sv[lid] = acc;
  ${isArg ? 'si[lid] = ai;' : ''}
  workgroupBarrier();
  ${tree.join('\n  ')}
  if (lid == 0u) {
    ${isArg ? 'let ai = si[0];' : ''}
    let acc = sv[0];
    ${store}
  }
}`;
  });
  const groups = perThread ? c.grid(Math.ceil(rows / RWG)) : c.grid(rows);
  c.dispatch(pipeline, words, [bindingOf(out), ...b.storages.map(bindingOf)], groups);
  return out;
}

export const reduce: GpuKernel<'reduce'> = (c, op, x, outer, inner, outDtype) => {
  c.check(op);
  if (outer === 0) return c.allocate(op, outDtype, 0);
  if (inner === 0) {
    const identityValue = op === 'prod' ? 1 : 0;
    return elementwise(c, {
      root: { kind: 'const', index: 0, dtype: outDtype },
      inputs: [],
      consts: [identityValue],
      shape: [outer],
    });
  }
  // the first `split` dims are the kept ones
  let split = 0;
  let prod = 1;
  while (split < x.shape.length && prod !== outer) prod *= x.shape[split++];
  const isArg = op === 'argmax' || op === 'argmin';
  const chunks = !isArg && outer < 512 && inner >= 4 * CHUNK ? Math.min(1024, Math.ceil(inner / CHUNK)) : 1;
  if (chunks === 1) return reducePass(c, op, x, split, outer, inner, 1, outDtype);
  // partial results per chunk go to a scratch buffer (no tensor owns it), then reduce again
  const scratch = c.scratch(op, outer * chunks);
  const partial = new Storage('webgpu', outDtype, outer * chunks, outer * chunks * 4, scratch);
  reducePass(c, op, x, split, outer, inner, chunks, outDtype, partial);
  const view = { storage: partial, shape: [outer, chunks], strides: [chunks, 1], offset: 0 };
  const out = reducePass(c, op, loadProgram(view), 1, outer, chunks, 1, outDtype);
  c.release(scratch);
  return out;
};
