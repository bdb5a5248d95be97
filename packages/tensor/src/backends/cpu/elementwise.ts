import type { KernelTable } from '../../backend.js';
import { type DType, type TypedArray, typedArrayFor } from '../../dtype.js';
import { type ElementwiseProgram, exprKey, linearize, type Step } from '../../expr/program.js';
import { TABLE } from '../../expr/table.js';
import { philoxNormal, philoxUniform } from '../../philox.js';
import { coalesce, contiguousStrides, sizeOf } from '../../shape.js';
import { Storage, type View } from '../../storage.js';
import { cpuArray, storageOf } from './storage.js';
import { arrayOf } from './strided.js';

/**
 * The CPU's one elementwise kernel. Each program structure compiles once to a monomorphic
 * JavaScript loop nest (one loop per coalesced dim, an offset per operand stepped by its
 * stride), cached by the program's key. V8 then sees one typed-array kind per access site, which
 * is what made the old hand-written per-op loops fast; now they are generated from the op table.
 * Where code generation is not allowed (a Content-Security-Policy without 'unsafe-eval'),
 * `evaluateProgram` interprets the same program: it is also the reference the generated code is
 * tested against.
 *
 * Semantics match one kernel per op exactly: every intermediate is rounded to its dtype
 * (float32 by Math.fround, int32 by wrapping), as if it had been stored.
 */

/**
 * Runs a compiled loop nest: arrays of the inputs, the output, then layout words (offsets and
 * strides of the output, the inputs and the random draws' positions), constants and the draws'
 * keys (two words each).
 */
type Compiled = (
  inputs: readonly TypedArray[],
  out: TypedArray,
  offsets: Int32Array,
  shape: Int32Array,
  strides: Int32Array,
  consts: readonly number[],
  keys: Uint32Array,
) => void;

/** The random-leaf functions generated code calls (philox.ts). */
const RNG = { uniform: philoxUniform, normal: philoxNormal };

const compiled = new Map<string, Compiled | null>();
let codegenAllowed: boolean | null = null;

/** Whether `new Function` works here (it throws under a CSP without 'unsafe-eval'). */
function canGenerate(): boolean {
  if (codegenAllowed === null) {
    try {
      codegenAllowed = new Function('return 1')() === 1;
    } catch {
      codegenAllowed = false;
    }
  }
  return codegenAllowed;
}

/**
 * Forces the interpreter (true) or allows generated code again (false): for tests of the
 * fallback path.
 *
 * @example
 * useCpuInterpreter(true); // every CPU elementwise kernel now runs evaluateProgram
 */
export function useCpuInterpreter(on: boolean): void {
  codegenAllowed = on ? false : null;
}

export const elementwise: KernelTable['elementwise'] = (program, dst) => {
  if (dst) {
    // writing into memory the program also reads: compute it aside first
    if (program.inputs.some((v) => v.storage === dst.storage)) {
      const values = evaluate(program, null);
      // scratch that no tensor owns: an uncounted storage wraps it for the copy
      const scratch = new Storage('cpu', program.root.dtype, values.length, values.byteLength, values);
      const tmp = { storage: scratch, shape: dst.shape, strides: contiguousStrides(dst.shape), offset: 0 };
      evaluate(
        {
          root: { kind: 'load', input: 0, dtype: program.root.dtype },
          inputs: [tmp],
          consts: [],
          shape: dst.shape,
        },
        dst,
      );
      return dst.storage;
    }
    evaluate(program, dst);
    return dst.storage;
  }
  const dtype = program.root.dtype;
  return storageOf(evaluate(program, null, cpuArray(dtype, sizeOf(program.shape))), dtype);
};

/**
 * Evaluates a program into `dst` (a strided view of its shape), or into a new contiguous typed
 * array, which it returns.
 */
export function evaluate(program: ElementwiseProgram, dst: View | null, into?: TypedArray): TypedArray {
  const dtype = program.root.dtype;
  const n = sizeOf(program.shape);
  // `into`: a zero-filled contiguous array of n elements to write (a kernel's output from cpuArray)
  const out = dst ? arrayOf(dst) : (into ?? typedArrayFor(dtype, n));
  if (n === 0) return out;
  if (!dst && program.root.kind === 'const') {
    const v = program.consts[program.root.index];
    if (v !== 0) out.fill(v);
    return out;
  }
  const outStrides = dst ? dst.strides : contiguousStrides(program.shape);
  const rng = program.rng ?? [];
  const co = coalesce(program.shape, [
    outStrides,
    ...program.inputs.map((v) => v.strides),
    ...rng.map((r) => r.strides),
  ]);
  const rank = co.shape.length;
  const offsets = Int32Array.from([
    dst ? dst.offset : 0,
    ...program.inputs.map((v) => v.offset),
    ...rng.map((r) => r.offset),
  ]);
  const strides = Int32Array.from(co.strides.flat());
  const shape = Int32Array.from(co.shape);
  const arrays = program.inputs.map(arrayOf);
  const keys = Uint32Array.from(rng.flatMap((r) => [r.key.key0, r.key.key1]));
  const fn = canGenerate() ? compile(program, rank) : null;
  if (fn) fn(arrays, out, offsets, shape, strides, program.consts, keys);
  else interpret(program, arrays, out, offsets, shape, strides, rank, keys);
  return out;
}

// ---- code generation ------------------------------------------------------------------------

function compile(program: ElementwiseProgram, rank: number): Compiled | null {
  const inTypes = program.inputs.map((v) => v.storage.dtype[0]).join('');
  const key = `${exprKey(program.root)}|${inTypes}|${rank}|${program.rng?.length ?? 0}`;
  let fn = compiled.get(key);
  if (fn === undefined) {
    fn = generate(program, rank);
    compiled.set(key, fn);
  }
  return fn;
}

function generate(program: ElementwiseProgram, rank: number): Compiled | null {
  const { steps, result } = linearize(program.root);
  const k = program.inputs.length;
  const nr = program.rng?.length ?? 0;
  const ops = [...new Set(steps.flatMap((s) => (s.node.kind === 'op' ? [s.node.op] : [])))];
  const lines: string[] = ['"use strict";', 'const fr = Math.fround;'];
  if (nr > 0) lines.push('const R_uniform = RNG.uniform;', 'const R_normal = RNG.normal;');
  for (const op of ops) {
    const row = TABLE[op];
    lines.push(`const f_${op} = T.${op}.ts;`);
    if (row.tsInt) lines.push(`const fi_${op} = T.${op}.tsInt;`);
  }
  lines.push('return function (A, out, offs, shape, st, C, K) {');
  for (let i = 0; i < k; i++) lines.push(`const a${i} = A[${i}];`);
  const nConsts = program.consts.length;
  for (let i = 0; i < nConsts; i++) lines.push(`const c${i} = C[${i}];`);
  for (let i = 0; i < 2 * nr; i++) lines.push(`const k${i} = K[${i}];`);
  const operands = [
    'o',
    ...Array.from({ length: k }, (_, i) => `p${i}`),
    ...Array.from({ length: nr }, (_, i) => `r${i}`),
  ];
  for (let d = 0; d < rank; d++) {
    lines.push(`const n${d} = shape[${d}];`);
    lines.push(...operands.map((name, j) => `const s${name}_${d} = st[${j * rank + d}];`));
  }
  lines.push(...operands.map((name, j) => `let ${name}_0 = offs[${j}];`));
  const body = steps.map((s, i) => `const t${i} = ${stepCode(s, `_${rank}`)};`);
  body.push(`out[o_${rank}] = t${result};`);
  if (rank === 0) {
    // a one-element program: no loops, the level-0 offsets are the addresses
    lines.push(...body);
  } else {
    for (let d = 0; d < rank; d++) {
      lines.push(`for (let i${d} = 0; i${d} < n${d}; i${d}++) {`);
      lines.push(...operands.map((name) => `let ${name}_${d + 1} = ${name}_${d};`));
      if (d === rank - 1) lines.push(...body);
    }
    for (let d = rank - 1; d >= 0; d--) {
      // step the offsets of this level's parent, then close the loop
      lines.push(...operands.map((name) => `${name}_${d} += s${name}_${d};`));
      lines.push('}');
    }
  }
  lines.push('};');
  const source = lines.join('\n');
  try {
    return new Function('T', 'RNG', source)(TABLE, RNG) as Compiled;
  } catch {
    codegenAllowed = false;
    return null;
  }
}

/** JavaScript for one step; `level` is the suffix of the innermost offsets (`p3_2`, say). */
function stepCode(s: Step, level: string): string {
  const e = s.node;
  const arg = (i: number) => `t${s.args[i]}`;
  switch (e.kind) {
    case 'load':
      return `a${e.input}[p${e.input}${level}]`;
    case 'const':
      return `c${e.index}`;
    case 'random':
      return `R_${e.dist}(r${e.index}${level}, k${2 * e.index}, k${2 * e.index + 1})`;
    case 'cast':
      return castCode(arg(0), e.arg.dtype, e.dtype);
    case 'op': {
      const row = TABLE[e.op];
      const args = s.args.map((_, i) => arg(i)).join(', ');
      if (e.dtype === 'int32' && row.tsInt) return `fi_${e.op}(${args})`;
      return wrapTo(`f_${e.op}(${args})`, e.dtype);
    }
  }
}

function wrapTo(code: string, dtype: DType): string {
  if (dtype === 'float32') return `fr(${code})`;
  if (dtype === 'int32') return `(${code} | 0)`;
  return code;
}

function castCode(v: string, from: DType, to: DType): string {
  if (from === to) return v;
  if (to === 'bool') return `(${v} !== 0 ? 1 : 0)`;
  if (to === 'int32') return from === 'float32' ? `(${v} | 0)` : v;
  return from === 'int32' ? `fr(${v})` : v;
}

// ---- the interpreter ------------------------------------------------------------------------

/**
 * Evaluates a program element by element, walking the output in row-major order with an
 * odometer over the coalesced dims: the fallback without code generation, and the reference.
 */
function interpret(
  program: ElementwiseProgram,
  arrays: readonly TypedArray[],
  out: TypedArray,
  offsets: Int32Array,
  shape: Int32Array,
  strides: Int32Array,
  rank: number,
  keys: Uint32Array,
): void {
  const { steps, result } = linearize(program.root);
  const t = new Float64Array(steps.length);
  const k = offsets.length;
  const pos = Int32Array.from(offsets);
  const idx = new Int32Array(rank);
  const n = sizeOf(Array.from(shape));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < steps.length; j++) t[j] = evalStep(steps[j], t, arrays, pos, program.consts, keys);
    out[pos[0]] = t[result];
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      for (let o = 0; o < k; o++) pos[o] += strides[o * rank + d];
      if (idx[d] < shape[d]) break;
      for (let o = 0; o < k; o++) pos[o] -= idx[d] * strides[o * rank + d];
      idx[d] = 0;
    }
  }
}

function evalStep(
  s: Step,
  t: Float64Array,
  arrays: readonly TypedArray[],
  pos: Int32Array,
  consts: readonly number[],
  keys: Uint32Array,
): number {
  const e = s.node;
  switch (e.kind) {
    case 'load':
      return arrays[e.input][pos[e.input + 1]];
    case 'const':
      return consts[e.index];
    case 'random':
      return RNG[e.dist](pos[1 + arrays.length + e.index], keys[2 * e.index], keys[2 * e.index + 1]);
    case 'cast':
      return castValue(t[s.args[0]], e.arg.dtype, e.dtype);
    case 'op': {
      const row = TABLE[e.op];
      const a = t[s.args[0]];
      const b = t[s.args[1]];
      if (e.dtype === 'int32' && row.tsInt) return row.tsInt(a, b);
      // exactly `arity` arguments: Math.max and friends are variadic
      const v =
        row.arity === 1
          ? (row.ts as (x: number) => number)(a)
          : row.arity === 2
            ? (row.ts as (x: number, y: number) => number)(a, b)
            : row.ts(a, b, t[s.args[2]]);
      return e.dtype === 'float32' ? Math.fround(v) : e.dtype === 'int32' ? v | 0 : v;
    }
  }
}

function castValue(v: number, from: DType, to: DType): number {
  if (from === to) return v;
  if (to === 'bool') return v !== 0 ? 1 : 0;
  if (to === 'int32') return v | 0;
  return Math.fround(v);
}

/**
 * Evaluates a program by the interpreter alone (the reference the generated loops are tested
 * against).
 *
 * @example
 * const values = evaluateProgram(program); // a new contiguous typed array
 */
export function evaluateProgram(program: ElementwiseProgram): TypedArray {
  const saved = codegenAllowed;
  codegenAllowed = false;
  try {
    return evaluate(program, null);
  } finally {
    codegenAllowed = saved;
  }
}
