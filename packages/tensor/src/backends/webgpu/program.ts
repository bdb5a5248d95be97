import type { DType } from '../../dtype.js';
import { lazyOf } from '../../engine/memory.js';
import { type ElementwiseProgram, type Expr, exprKey, linearize } from '../../expr/program.js';
import { TABLE } from '../../expr/table.js';
import type { Storage } from '../../storage.js';
import { type Binding, ELEMENT_BYTES } from './context.js';
import { WGSL_TYPE } from './wgsl.js';

/**
 * WGSL for the expression of an elementwise program, shared by the elementwise and reduce
 * kernels: which buffer each input reads (inputs over one storage share a binding), and the
 * statements that compute the value from the loaded inputs `x0`, `x1`, ….
 */

/** The bound range of a storage: all of its elements (at least one word). */
export function bindingOf(storage: Storage): Binding {
  if (lazyOf(storage)) throw new Error('internal: a lazy storage reached a WebGPU kernel');
  return {
    buffer: storage.handle as GPUBuffer,
    size: Math.max(ELEMENT_BYTES, storage.size * ELEMENT_BYTES),
  };
}

/** The inputs' storages, one binding each: `slot[i]` is the binding index of input i. */
export interface InputBindings {
  readonly storages: readonly Storage[];
  readonly slot: readonly number[];
}

export function inputBindings(program: ElementwiseProgram): InputBindings {
  const storages: Storage[] = [];
  const slot = program.inputs.map((v) => {
    let i = storages.indexOf(v.storage);
    if (i < 0) {
      i = storages.length;
      storages.push(v.storage);
    }
    return i;
  });
  return { storages, slot };
}

/** Part of the pipeline key: expression structure, which binding each input reads, dtypes. */
export function programKey(program: ElementwiseProgram, b: InputBindings): string {
  const dtypes = b.storages.map((s) => s.dtype[0]).join('');
  return `${exprKey(program.root)}|${b.slot.join(',')}|${dtypes}`;
}

/**
 * WGSL statements computing the program's value into `let <result> = …;` from loaded inputs
 * named `x<i>`; constant i is read by `constWord(i)` (a u32 word of the uniform block); random
 * draw i by `random(i, dist)` (only the elementwise kernel takes random nodes).
 */
export function expressionCode(
  root: Expr,
  result: string,
  constWord: (i: number) => string,
  oneWord: string,
  random?: (i: number, dist: 'uniform' | 'normal') => string,
): string {
  // every float op's result is multiplied by a 1.0 the compiler cannot see (a uniform word):
  // without it a driver's fast math rewrites across what were separate ops, e.g. lavapipe turned
  // square(sqrt(x)) into x for x < 0 and exp(−2·log(0)) into 0, where one kernel per op gives NaN
  // and +Inf. The multiply keeps NaN, ±Inf and −0, and costs nothing in memory-bound kernels.
  const one = `bitcast<f32>(${oneWord})`;
  const { steps, result: last } = linearize(root);
  const lines = steps.map((s, i) => {
    const e = s.node;
    const arg = (j: number) => `t${s.args[j]}`;
    let code: string;
    switch (e.kind) {
      case 'load':
        code = `x${e.input}`;
        break;
      case 'const':
        code = `bitcast<${WGSL_TYPE[e.dtype]}>(${constWord(e.index)})`;
        break;
      case 'random':
        if (!random) throw new Error('internal: a random node reached a kernel other than elementwise');
        code = `(${random(e.index, e.dist)}) * ${one}`;
        break;
      case 'cast':
        code = castCode(arg(0), e.arg.dtype, e.dtype);
        if (e.dtype === 'float32') code = `(${code}) * ${one}`;
        break;
      case 'op': {
        const row = TABLE[e.op];
        // the operands' dtype picks the form (where's condition is always bool: look at `a`)
        const operand = e.args[e.op === 'where' ? 1 : 0].dtype;
        let template: string;
        if (operand === 'float32') template = row.wgsl.f;
        else {
          if (!row.wgsl.i) throw new Error(`internal: '${e.op}' has no ${operand} WGSL form`);
          template = row.wgsl.i.replaceAll('Z', operand === 'int32' ? '0' : '0u');
        }
        code = template.replace(/\$(\d)/g, (_, d: string) => arg(Number(d)));
        if (e.dtype === 'float32') code = `(${code}) * ${one}`;
        break;
      }
    }
    return `let t${i} = ${code};`;
  });
  lines.push(`let ${result} = t${last};`);
  return lines.join('\n  ');
}

function castCode(v: string, from: DType, to: DType): string {
  if (from === to) return v;
  if (to === 'bool')
    return from === 'float32'
      ? `select(0u, 1u, f_nonzero(${v}))`
      : `select(0u, 1u, ${v} != ${from === 'int32' ? '0' : '0u'})`;
  if (to === 'float32') return `f32(${v})`;
  return from === 'float32' ? `f2i(${v})` : `i32(${v})`;
}

/** The bits of 1.0f: the uniform word `expressionCode` multiplies float results by. */
export const ONE_BITS = 0x3f800000;

/** The 32-bit word of a constant of `dtype` (what `bitcast` reads back in WGSL). */
export function constBits(value: number, dtype: DType): number {
  const bits = new Uint32Array(1);
  if (dtype === 'float32') new Float32Array(bits.buffer)[0] = value;
  else if (dtype === 'int32') new Int32Array(bits.buffer)[0] = value;
  else bits[0] = value ? 1 : 0;
  return bits[0];
}

/** The dtype of each constant of a program (read off the nodes that use it). */
export function constDtypes(program: ElementwiseProgram): DType[] {
  const out: DType[] = program.consts.map(() => 'float32');
  const visit = (e: Expr): void => {
    if (e.kind === 'const') out[e.index] = e.dtype;
    else if (e.kind === 'cast') visit(e.arg);
    else if (e.kind === 'op') for (const a of e.args) visit(a);
  };
  visit(program.root);
  return out;
}
