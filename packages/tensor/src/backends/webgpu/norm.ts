import { loadProgram } from '../../expr/program.js';
import { Storage } from '../../storage.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { reduce } from './reduce.js';
import { RowPrograms } from './rows.js';
import { metaStruct, PRELUDE, u } from './wgsl.js';

/**
 * Layer/RMS normalisation. Forward and input gradient take one workgroup per row: each
 * invocation accumulates two sums over its strided share of the row, a tree in workgroup memory
 * merges them, and a second read of the row (mostly served by the cache) writes the result. The
 * input (and gradient) are elementwise programs, so a residual add before the norm runs inside
 * the kernel. The variance is E[(x − s)²] − E[x − s]² about the row's first element s, which
 * keeps the one-pass sums from cancelling when the mean is large against the spread. The weight
 * and bias gradients are a column reduction over rows: partial sums per block of rows (threads
 * on consecutive columns, so reads coalesce), then the reduce kernel sums the blocks.
 */

const WG = 256;
/** Columns per workgroup of the parameter-gradient kernel (one per invocation). */
const PARAM_COLS = 64;
/** Rows each workgroup of the parameter-gradient kernel sums. */
const PARAM_ROWS = 32;

/** A tree reduction of the workgroup arrays `sa` and `sb` into their slot 0. */
function tree(): string {
  const lines: string[] = [];
  for (let step = WG / 2; step >= 1; step >>= 1) {
    lines.push(`if (lid < ${step}u) { sa[lid] += sa[lid + ${step}u]; sb[lid] += sb[lid + ${step}u]; }`);
    lines.push('workgroupBarrier();');
  }
  return lines.join('\n  ');
}

const ROW_MAIN = `var<workgroup> sa: array<f32, ${WG}>;
var<workgroup> sb: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= ${u(0)}) { return; }
  let cols = ${u(1)};
  let n = f32(cols);`;

export const norm: GpuKernel<'norm'> = (c, kind, x, rows, cols, weight, bias, eps, stats) => {
  c.check(kind === 'layer' ? 'layerNorm' : 'rmsNorm');
  const op = kind === 'layer' ? 'layerNorm' : 'rmsNorm';
  const y = c.allocate(op, 'float32', rows * cols);
  const mean = stats && kind === 'layer' ? c.allocate(op, 'float32', rows) : null;
  const rstd = stats ? c.allocate(op, 'float32', rows) : null;
  if (rows === 0) return { y, mean, rstd };
  const epsBits = new Uint32Array(new Float32Array([eps]).buffer)[0];
  const rp = new RowPrograms([x], [weight, bias], [rows, cols, epsBits]);
  const outs = [y, mean, rstd].filter((t): t is Storage<GPUBuffer> => t !== null);
  const w = weight ? rp.vector(0, 'j') : '1.0';
  const b = bias ? rp.vector(weight ? 1 : 0, 'j') : '0.0';
  const layer = kind === 'layer';
  const key = `norm|${kind}|${stats ? 's' : ''}${weight ? 'w' : ''}${bias ? 'b' : ''}|${rp.key()}`;
  const pipeline = c.pipeline(key, () => {
    const statDecls = [
      mean ? '@group(0) @binding(2) var<storage, read_write> mean_o: array<f32>;' : '',
      rstd ? `@group(0) @binding(${mean ? 3 : 2}) var<storage, read_write> rstd_o: array<f32>;` : '',
    ].join('\n');
    return `${PRELUDE}
${metaStruct(rp.words.length)}
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
${statDecls}
${rp.bindings(1 + outs.length)}
${rp.functions()}
${ROW_MAIN}
  ${rp.rowOffsets('row')}
  let shift = ${layer ? `${rp.value(0, '0u')}` : '0.0'};
  var a = 0.0;
  var q = 0.0;
  for (var j = lid; j < cols; j += ${WG}u) {
    let d = ${rp.value(0, 'j')} - shift;
    a += d;
    q += d * d;
  }
  sa[lid] = a;
  sb[lid] = q;
  workgroupBarrier();
  ${tree()}
  let md = ${layer ? 'sa[0] / n' : '0.0'};
  let mu = shift + md;
  let rs = 1.0 / sqrt(max(sb[0] / n - md * md, 0.0) + bitcast<f32>(${u(2)}));
  if (lid == 0u) {
    ${mean ? 'mean_o[row] = mu;' : ''}
    ${rstd ? 'rstd_o[row] = rs;' : ''}
  }
  for (var j = lid; j < cols; j += ${WG}u) {
    y[row * cols + j] = (${rp.value(0, 'j')} - mu) * rs * ${w} + ${b};
  }
}`;
  });
  c.dispatch(pipeline, rp.uniform(), [...outs.map(bindingOf), ...rp.storages.map(bindingOf)], c.grid(rows));
  return { y, mean, rstd };
};

export const normBackward: GpuKernel<'normBackward'> = (c, kind, x, grad, rows, cols, weight, mean, rstd) => {
  const op = kind === 'layer' ? 'layerNorm' : 'rmsNorm';
  c.check(op);
  const dx = c.allocate(op, 'float32', rows * cols);
  if (rows === 0) return dx;
  const layer = kind === 'layer';
  const rp = new RowPrograms([x, grad], [rstd, layer ? mean : null, weight], [rows, cols]);
  const w = weight ? rp.vector(layer ? 2 : 1, 'j') : '1.0';
  const key = `normBwd|${kind}|${weight ? 'w' : ''}|${rp.key()}`;
  const pipeline = c.pipeline(
    key,
    () => `${PRELUDE}
${metaStruct(rp.words.length)}
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
${rp.bindings(2)}
${rp.functions()}
${ROW_MAIN}
  ${rp.rowOffsets('row')}
  let rs = ${rp.vector(0, 'row')};
  let mu = ${layer ? rp.vector(1, 'row') : '0.0'};
  var a = 0.0;
  var q = 0.0;
  for (var j = lid; j < cols; j += ${WG}u) {
    let xh = (${rp.value(0, 'j')} - mu) * rs;
    let gw = ${rp.value(1, 'j')} * ${w};
    a += gw;
    q += gw * xh;
  }
  sa[lid] = a;
  sb[lid] = q;
  workgroupBarrier();
  ${tree()}
  let ca = ${layer ? 'sa[0] / n' : '0.0'};
  let cb = sb[0] / n;
  for (var j = lid; j < cols; j += ${WG}u) {
    let xh = (${rp.value(0, 'j')} - mu) * rs;
    let gw = ${rp.value(1, 'j')} * ${w};
    dx[row * cols + j] = rs * (gw - ca - xh * cb);
  }
}`,
  );
  c.dispatch(pipeline, rp.uniform(), [bindingOf(dx), ...rp.storages.map(bindingOf)], c.grid(rows));
  return dx;
};

export const normParamGrad: GpuKernel<'normParamGrad'> = (c, kind, x, grad, rows, cols, mean, rstd, bias) => {
  const op = kind === 'layer' ? 'layerNorm' : 'rmsNorm';
  c.check(op);
  const parts = bias ? 2 : 1;
  const blocks = Math.max(1, Math.ceil(rows / PARAM_ROWS));
  const groups = Math.ceil(cols / PARAM_COLS);
  if (cols === 0)
    return { weight: c.allocate(op, 'float32', 0), bias: bias ? c.allocate(op, 'float32', 0) : null };
  const layer = kind === 'layer';
  const rp = new RowPrograms([x, grad], [rstd, layer ? mean : null], [rows, cols, groups, blocks]);
  const key = `normParam|${kind}|${bias ? 'b' : ''}|${rp.key()}`;
  const pipeline = c.pipeline(
    key,
    () => `${PRELUDE}
${metaStruct(rp.words.length)}
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
${rp.bindings(2)}
${rp.functions()}
@compute @workgroup_size(${PARAM_COLS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${u(2)} * ${u(3)}) { return; }
  let cols = ${u(1)};
  let col = (w % ${u(2)}) * ${PARAM_COLS}u + lid;
  let blk = w / ${u(2)};
  if (col >= cols) { return; }
  var dw = 0.0;
  var db = 0.0;
  let r1 = min(${u(0)}, (blk + 1u) * ${PARAM_ROWS}u);
  for (var row = blk * ${PARAM_ROWS}u; row < r1; row++) {
    ${rp.rowOffsets('row')}
    let xh = (${rp.value(0, 'col')} - ${layer ? rp.vector(1, 'row') : '0.0'}) * ${rp.vector(0, 'row')};
    let g = ${rp.value(1, 'col')};
    dw += g * xh;
    db += g;
  }
  part[blk * cols + col] = dw;
  ${bias ? `part[(${u(3)} + blk) * cols + col] = db;` : ''}
}`,
  );
  // partial sums [parts, blocks, cols] in a scratch buffer no tensor owns, then summed over blocks
  const size = parts * blocks * cols;
  const scratch = c.scratch(op, size);
  const partial = new Storage('webgpu', 'float32', size, size * 4, scratch);
  c.dispatch(
    pipeline,
    rp.uniform(),
    [bindingOf(partial), ...rp.storages.map(bindingOf)],
    c.grid(groups * blocks),
  );
  // one reduction per gradient, so each is a storage of its own (a leaf's .grad adopts it uncopied)
  const sumBlocks = (part: number) => {
    const view = {
      storage: partial,
      shape: [cols, blocks],
      strides: [1, cols],
      offset: part * blocks * cols,
    };
    return reduce(c, 'sum', loadProgram(view), cols, blocks, 'float32');
  };
  const out = { weight: sumBlocks(0), bias: bias ? sumBlocks(1) : null };
  c.release(scratch);
  return out;
};
