import type { ElementwiseProgram } from '../../expr/program.js';
import { PHILOX_WGSL } from '../../philox.js';
import { coalesce, contiguousStrides, sizeOf } from '../../shape.js';
import { Storage, type View } from '../../storage.js';
import { type Binding, ELEMENT_BYTES, type WebGPUContext } from './context.js';
import type { GpuKernel } from './kernel.js';
import {
  bindingOf,
  constBits,
  constDtypes,
  expressionCode,
  type InputBindings,
  inputBindings,
  ONE_BITS,
  programKey,
} from './program.js';
import { linearIndex, MAIN_ARGS, metaStruct, PRELUDE, s, u, unravel, WG, WGSL_TYPE } from './wgsl.js';

/**
 * The one elementwise kernel of the WebGPU backend: WGSL generated for each program structure
 * (cached by a key of its ops, dtypes, bindings and coalesced rank; sizes, strides and constants
 * are uniform words, so new shapes and values compile nothing). Contiguous, 16-byte-aligned
 * programs read and write vec4s, four elements per invocation.
 */

/** Fills of fewer elements are uploaded from the host: a queue write costs less than a dispatch. */
const UPLOAD_FILL_BELOW = 16384;

export const elementwise: GpuKernel<'elementwise'> = (c, program, dst) => {
  c.check('elementwise');
  const n = sizeOf(program.shape);
  if (dst) {
    if (n === 0) return dst.storage;
    if (program.inputs.some((v) => v.storage === dst.storage)) {
      // one buffer cannot be bound for reading and writing in one dispatch: compute it aside
      const scratch = c.scratch('elementwise', n);
      const tmp = new Storage('webgpu', program.root.dtype, n, n * ELEMENT_BYTES, scratch);
      run(c, program, {
        storage: tmp,
        shape: program.shape,
        strides: contiguousStrides(program.shape),
        offset: 0,
      });
      const view = {
        storage: tmp,
        shape: program.shape,
        strides: contiguousStrides(program.shape),
        offset: 0,
      };
      run(
        c,
        {
          root: { kind: 'load', input: 0, dtype: tmp.dtype },
          inputs: [view],
          consts: [],
          shape: program.shape,
        },
        dst,
      );
      c.release(scratch);
      return dst.storage;
    }
    run(c, program, dst);
    return dst.storage;
  }
  const dtype = program.root.dtype;
  if (program.root.kind === 'const' && n < UPLOAD_FILL_BELOW) {
    const words = new Uint32Array(n).fill(constBits(program.consts[program.root.index], dtype));
    return c.upload('fill', words, dtype, n);
  }
  const out = c.allocate('elementwise', dtype, n);
  if (n > 0)
    run(c, program, {
      storage: out,
      shape: program.shape,
      strides: contiguousStrides(program.shape),
      offset: 0,
    });
  return out;
};

/** Records the dispatch of `program` into the strided view `dst`. */
function run(c: WebGPUContext, program: ElementwiseProgram, dst: View): void {
  const n = sizeOf(program.shape);
  const b = inputBindings(program);
  const k = program.inputs.length;
  const rng = program.rng ?? [];
  const nr = rng.length;
  const co = coalesce(program.shape, [
    dst.strides,
    ...program.inputs.map((v) => v.strides),
    ...rng.map((r) => r.strides),
  ]);
  const rank = co.shape.length;
  const vec4 = nr > 0 ? null : vectorizable(program, b, dst, co.shape, co.strides, n);
  const m = program.consts.length;
  // words: n, out offset, input offsets[k], draw positions[nr], shape[rank],
  // strides[(k+1+nr)·rank], constants[m], keys[2·nr], 1.0
  const shapeAt = 2 + k + nr;
  const strideAt = Array.from({ length: k + 1 + nr }, (_, i) => shapeAt + rank + i * rank);
  const constAt = shapeAt + rank * (k + 2 + nr);
  const keyAt = constAt + m;
  const oneAt = keyAt + 2 * nr;
  const words = new Uint32Array(oneAt + 1);
  words[oneAt] = ONE_BITS;
  const ints = new Int32Array(words.buffer);
  words[0] = vec4 ? n / 4 : n;
  words[1] = dst.offset;
  for (let i = 0; i < k; i++) {
    const v = program.inputs[i];
    words[2 + i] = v.offset;
  }
  for (let i = 0; i < nr; i++) {
    words[2 + k + i] = rng[i].offset;
    words[keyAt + 2 * i] = rng[i].key.key0;
    words[keyAt + 2 * i + 1] = rng[i].key.key1;
  }
  for (let d = 0; d < rank; d++) {
    words[shapeAt + d] = co.shape[d];
    for (let j = 0; j <= k + nr; j++) ints[strideAt[j] + d] = co.strides[j][d];
  }
  const cd = constDtypes(program);
  for (let i = 0; i < m; i++) words[constAt + i] = constBits(program.consts[i], cd[i]);
  const outT = WGSL_TYPE[program.root.dtype];
  const key = `ew|${programKey(program, b)}>${program.root.dtype[0]}|r${rank}|k${k}|m${m}|n${nr}${vec4 ? `|v${vec4.map(Number).join('')}` : ''}`;
  const pipeline = c.pipeline(key, () => {
    const types = b.storages.map((st) => WGSL_TYPE[st.dtype]);
    // a binding is vec4 when its inputs step through it one element at a time
    const vecSlot = b.storages.map(
      (_, j) => vec4 !== null && program.inputs.some((_, i) => b.slot[i] === j && vec4[i]),
    );
    const decls = [
      `@group(0) @binding(1) var<storage, read_write> y: array<${vec4 ? `vec4<${outT}>` : outT}>;`,
      ...types.map(
        (t, j) =>
          `@group(0) @binding(${j + 2}) var<storage, read> in${j}: array<${vecSlot[j] ? `vec4<${t}>` : t}>;`,
      ),
    ];
    const constWord = (i: number) => u(constAt + i);
    const random = (i: number, dist: 'uniform' | 'normal') =>
      `philox_${dist}(u32(or${i}), ${u(keyAt + 2 * i)}, ${u(keyAt + 2 * i + 1)})`;
    const value = expressionCode(program.root, 'r_', constWord, u(oneAt), random);
    let body: string;
    if (vec4) {
      // four consecutive elements of one row per invocation: element e = 4·idx is at
      // (row, col) of the coalesced [rows, cols] (or [n]) shape; an operand stepping along the
      // row is read as one vec4 there, one broadcast along it as a single scalar
      const pos =
        rank === 2
          ? `let e = idx * 4u; let row = i32(e / ${u(shapeAt + 1)}); let col = i32(e % ${u(shapeAt + 1)});`
          : 'let row = 0; let col = i32(idx * 4u);';
      const addr = (j: number, base: string) =>
        rank === 2
          ? `${base} + row * ${s(strideAt[j])} + col * ${s(strideAt[j] + 1)}`
          : `${base} + col * ${s(strideAt[j])}`;
      const vecLoads: string[] = [];
      const laneLoads: string[] = [];
      for (let i = 0; i < k; i++) {
        const at = addr(i + 1, s(2 + i));
        if (vec4[i]) {
          vecLoads.push(`let v${i} = in${b.slot[i]}[(${at}) >> 2u];`);
          laneLoads.push(`let x${i} = v${i}[lane];`);
        } else laneLoads.push(`let x${i} = in${b.slot[i]}[${at}];`);
      }
      body = `${pos}
  ${vecLoads.join('\n  ')}
  var out_: vec4<${outT}>;
  for (var lane = 0u; lane < 4u; lane++) {
    ${laneLoads.join('\n    ')}
    ${value}
    out_[lane] = r_;
  }
  y[(${addr(0, 'i32(U.v[0].y)')}) >> 2u] = out_;`;
    } else {
      const names = ['oy', ...program.inputs.map((_, i) => `o${i}`), ...rng.map((_, i) => `or${i}`)];
      const offsets = [
        'i32(U.v[0].y)',
        ...program.inputs.map((_, i) => s(2 + i)),
        ...rng.map((_, i) => s(2 + k + i)),
      ];
      const loads = program.inputs.map((_, i) => `let x${i} = in${b.slot[i]}[o${i}];`).join('\n  ');
      body = `${unravel('idx', rank, shapeAt, names, offsets, strideAt)}
  ${loads}
  ${value}
  y[oy] = r_;`;
    }
    return `${PRELUDE}
${nr > 0 ? PHILOX_WGSL : ''}
${metaStruct(words.length)}
${decls.join('\n')}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let idx = ${linearIndex(WG)};
  if (idx >= U.v[0].x) { return; }
  ${body}
}`;
  });
  const bindings: Binding[] = [bindingOf(dst.storage), ...b.storages.map(bindingOf)];
  c.dispatch(pipeline, words, bindings, c.grid(Math.ceil(words[0] / WG)));
}

/**
 * Per input, whether it is read as vec4s (true) or as one scalar broadcast along the row (false),
 * or null when the program cannot take the vec4 path: the coalesced shape is [n] or [rows, cols]
 * with cols a multiple of 4 (a bias add over [B·T, C], say), the output and every stepping input
 * step through rows with stride 1 from 16-byte-aligned starts, and no storage is read both ways.
 */
function vectorizable(
  program: ElementwiseProgram,
  b: InputBindings,
  dst: View,
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  n: number,
): boolean[] | null {
  // the row (the last coalesced dim) must split into whole vec4s, every row must start 16-byte
  // aligned, and the output must step through it
  const rank = shape.length;
  if (n % 4 !== 0 || rank < 1 || rank > 2 || shape[rank - 1] % 4 !== 0) return null;
  const aligned = (offset: number, st: readonly number[]) =>
    offset % 4 === 0 && (rank === 1 || st[0] % 4 === 0);
  if (strides[0][rank - 1] !== 1 || !aligned(dst.offset, strides[0])) return null;
  const stepping = program.inputs.map((v, i) => {
    const st = strides[i + 1];
    if (st[rank - 1] === 1 && aligned(v.offset, st)) return true;
    if (st[rank - 1] === 0) return false;
    return null;
  });
  if (stepping.some((x) => x === null)) return null;
  for (let j = 0; j < b.storages.length; j++) {
    const modes = new Set(stepping.filter((_, i) => b.slot[i] === j));
    if (modes.size > 1) return null;
  }
  return stepping as boolean[];
}
