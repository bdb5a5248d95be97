import type { DType } from '../../dtype.js';
import { type ElementwiseProgram, type Expr, linearize, type Step } from '../../expr/program.js';
import { type Local, ModuleBuilder, type PlainOp } from './assembler.js';
import { F64x2Math, MATH_OPS } from './math.js';
import type { WasmRuntime } from './runtime.js';

/**
 * Elementwise programs of float32 and bool values, four elements at a time as f32x4. The
 * TypeScript kernel computes each step in float64 and rounds it to float32; for +, −, ×, ÷, √,
 * min, max, negation, absolute value, rounding and comparisons of float32 operands that is
 * exactly the float32 operation (float64 has more than 2·24 + 2 bits, so rounding twice is
 * rounding once), so these steps are single f32x4 instructions with no conversions. The other
 * steps (math.ts's transcendentals, rsqrt) go through float64 as in the f64x2 compiler
 * (elementwise.ts): the four lanes as two f64x2 halves, then back. Same bits as that compiler.
 * tanh-GELU's backward (≈ 25 steps, one tanh) ran 28–30 ns an element on the f64x2 compiler,
 * each step an op, a demote and a promote in one dependency chain (2-core VM).
 *
 * Same kernel signature as the f64x2 compiler without random leaves:
 * `run(out, in…, n0, n1, n2, strides (3 per operand, bytes), consts…)`.
 */

const F32_OPS: Record<string, PlainOp> = {
  add: 'f32x4.add',
  sub: 'f32x4.sub',
  mul: 'f32x4.mul',
  div: 'f32x4.div',
  maximum: 'f32x4.max',
  minimum: 'f32x4.min',
};
const COMPARE: Record<string, PlainOp> = {
  eq: 'f32x4.eq',
  ne: 'f32x4.ne',
  lt: 'f32x4.lt',
  le: 'f32x4.le',
  gt: 'f32x4.gt',
  ge: 'f32x4.ge',
};
const F32_UNARY: Record<string, PlainOp> = {
  neg: 'f32x4.neg',
  abs: 'f32x4.abs',
  sqrt: 'f32x4.sqrt',
  floor: 'f32x4.floor',
  ceil: 'f32x4.ceil',
  round: 'f32x4.nearest',
};
/** Steps computed in float64 (their float32 result is not the float32 op's). */
const VIA_F64 = new Set([...MATH_OPS, 'rsqrt']);
const LOGICAL = new Set(['where', 'logicalAnd', 'logicalOr', 'logicalNot', 'relu', 'square', 'reciprocal']);

/** A compiled program: the function, and its module's bytes (for worker threads to compile). */
export type Run = ((...args: number[]) => void) & { readonly bytes: Uint8Array };

/**
 * Whether `program` has only float32 and bool values, operands and ops this compiler takes, and
 * no random leaves.
 *
 * @example
 * f32x4Supports(program); // true for GELU's backward
 */
export function f32x4Supports(program: ElementwiseProgram): boolean {
  if (program.rng?.length) return false;
  if (!program.inputs.every((v) => scalar(v.storage.dtype))) return false;
  let ok = supported.get(program.root);
  if (ok === undefined) {
    ok = supports(program);
    supported.set(program.root, ok);
  }
  return ok;
}

// by root: the tree's ops and dtypes decide
const supported = new WeakMap<Expr, boolean>();
const scalar = (d: DType) => d === 'float32' || d === 'bool';

function supports(program: ElementwiseProgram): boolean {
  if (!scalar(program.root.dtype)) return false;
  const { steps } = linearize(program.root);
  return steps.every(({ node: e }) => {
    if (!scalar(e.dtype)) return false;
    if (e.kind === 'cast') return scalar(e.arg.dtype);
    if (e.kind === 'random') return false;
    if (e.kind !== 'op') return true;
    if (!e.args.every((a) => scalar(a.dtype))) return false;
    if (e.op in COMPARE || ['logicalAnd', 'logicalOr', 'logicalNot'].includes(e.op))
      return e.dtype === 'bool';
    // where's branches and the arithmetic are float32 (a bool `add` has no float32 rounding)
    return (
      e.dtype === 'float32' &&
      (e.op in F32_OPS || e.op in F32_UNARY || VIA_F64.has(e.op) || LOGICAL.has(e.op))
    );
  });
}

/**
 * Compiles `program` (`f32x4Supports`) over operands of `dtypes` (the output, then the inputs),
 * `unit[k]` when operand k's inner stride is one element; null if the engine refuses the module.
 *
 * @example
 * const run = compileF32x4(rt, program, ['float32', 'float32'], [true, true]);
 */
export function compileF32x4(
  rt: WasmRuntime,
  program: ElementwiseProgram,
  dtypes: readonly DType[],
  unit: readonly boolean[],
): Run | null {
  const k = dtypes.length;
  const nc = program.consts.length;
  const m = new ModuleBuilder({
    initial: 1,
    maximum: rt.heap.shared ? rt.heap.maximumPages : undefined,
    shared: rt.heap.shared,
  });
  const f = m.function(
    'run',
    [...Array<'i32'>(k + 3 + 3 * k).fill('i32'), ...Array<'f64'>(nc).fill('f64')],
    [],
  );
  const ptr = Array.from({ length: k }, (_, i) => f.param(i));
  const [n0, n1, n2] = [f.param(k), f.param(k + 1), f.param(k + 2)];
  const st = (op: number, d: number) => f.param(k + 3 + 3 * op + d);
  const [i0, i1, i2, end4] = Array.from({ length: 4 }, () => f.local('i32'));
  const base0 = ptr.map(() => f.local('i32'));
  const p = ptr.map(() => f.local('i32'));
  const { steps, result } = linearize(program.root);
  const t = steps.map(() => f.local('v128'));
  const one = f.local('v128');
  const zero = f.local('v128');
  const one64 = f.local('v128');
  const [lo, hi, rLo] = [f.local('v128'), f.local('v128'), f.local('v128')];
  const math = new F64x2Math(f);
  // constants as f32x4 locals, set once
  const consts = program.consts.map((_, i) => {
    const c = f.local('v128');
    f.get(f.param(k + 3 + 3 * k + i))
      .op('f32.demote_f64', 'f32x4.splat')
      .set(c);
    return c;
  });
  f.f32(1).op('f32x4.splat').set(one);
  f.f32(0).op('f32x4.splat').set(zero);
  f.f64(1).op('f64x2.splat').set(one64);
  f.get(n2).i32(-4).op('i32.and').set(end4);

  /** Operand o's element `lane` (0..3) along the inner dim: its address. */
  const at = (o: number, lane: number) => {
    f.get(p[o]);
    if (lane > 0) f.get(st(o, 2)).i32(lane).op('i32.mul', 'i32.add');
  };
  const loadScalar = (o: number, lane: number) => {
    at(o, lane);
    if (dtypes[o] === 'float32') f.mem('f32.load');
    else f.mem('i32.load8_u').op('f32.convert_i32_u');
  };
  const load = (input: number, lanes: number) => {
    const o = input + 1;
    if (lanes === 4 && unit[o] && dtypes[o] === 'float32') {
      f.get(p[o]).mem('v128.load');
      return;
    }
    loadScalar(o, 0);
    f.op('f32x4.splat');
    for (let l = 1; l < lanes; l++) {
      loadScalar(o, l);
      f.lane('f32x4.replace_lane', l);
    }
  };

  /** A float64 step over the four lanes of `x`: two f64x2 halves, each rounded back to float32. */
  const viaF64 = (op: string, x: Local, lanes: number) => {
    const half = (h: Local) => {
      if (op === 'rsqrt') f.get(one64).get(h).op('f64x2.sqrt', 'f64x2.div');
      else math[op as 'exp'](h);
      f.op('f32x4.demote_f64x2_zero');
    };
    f.get(x).op('f64x2.promote_low_f32x4').set(lo);
    half(lo);
    if (lanes <= 2) return;
    f.set(rLo);
    f.get(x).get(x).shuffle([8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
    f.op('f64x2.promote_low_f32x4').set(hi);
    half(hi);
    f.set(hi);
    f.get(rLo).get(hi).shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
  };

  const step = (s: Step, lanes: number) => {
    const e = s.node;
    const arg = (i: number) => f.get(t[s.args[i]]);
    const nonzero = (i: number) => arg(i).get(zero).op('f32x4.ne');
    switch (e.kind) {
      case 'load':
        load(e.input, lanes);
        return;
      case 'const':
        f.get(consts[e.index]);
        return;
      case 'random':
        throw new Error('internal: f32x4Supports refuses random leaves');
      case 'cast':
        // float → bool is `!= 0`; bool → float and same-dtype casts keep the value
        arg(0);
        if (e.dtype === 'bool' && e.arg.dtype !== 'bool') f.get(zero).op('f32x4.ne').get(one).op('v128.and');
        return;
      case 'op': {
        const op = e.op;
        if (op in F32_OPS) arg(0).get(t[s.args[1]]).op(F32_OPS[op]);
        else if (op in COMPARE) arg(0).get(t[s.args[1]]).op(COMPARE[op]).get(one).op('v128.and');
        else if (op in F32_UNARY) arg(0).op(F32_UNARY[op]);
        else if (op === 'relu') arg(0).get(zero).op('f32x4.max');
        else if (op === 'square') arg(0).get(t[s.args[0]]).op('f32x4.mul');
        else if (op === 'reciprocal') f.get(one).get(t[s.args[0]]).op('f32x4.div');
        else if (op === 'where') {
          arg(1).get(t[s.args[2]]);
          nonzero(0).op('v128.bitselect');
        } else if (op === 'logicalAnd' || op === 'logicalOr') {
          nonzero(0);
          nonzero(1)
            .op(op === 'logicalAnd' ? 'v128.and' : 'v128.or')
            .get(one)
            .op('v128.and');
        } else if (op === 'logicalNot') arg(0).get(zero).op('f32x4.eq').get(one).op('v128.and');
        else if (VIA_F64.has(op)) viaF64(op, t[s.args[0]], lanes);
        else throw new Error(`wasm f32x4 elementwise: unsupported op ${op}`);
        return;
      }
    }
  };

  const store = (lanes: number) => {
    const value = t[result];
    if (dtypes[0] === 'float32' && lanes === 4 && unit[0]) {
      f.get(p[0]).get(value).mem('v128.store');
      return;
    }
    for (let l = 0; l < lanes; l++) {
      at(0, l);
      f.get(value).lane('f32x4.extract_lane', l);
      if (dtypes[0] === 'float32') f.mem('f32.store');
      else f.op('i32.trunc_f32_s').mem('i32.store8');
    }
  };

  const body = (lanes: number) => {
    steps.forEach((s, i) => {
      step(s, lanes);
      f.set(t[i]);
    });
    store(lanes);
  };
  const advance = (elements: number) => {
    for (let o = 0; o < k; o++) f.get(p[o]).get(st(o, 2)).i32(elements).op('i32.mul', 'i32.add').set(p[o]);
  };

  f.for(i0, 0, n0, 1, () => {
    for (let o = 0; o < k; o++) f.get(ptr[o]).get(i0).get(st(o, 0)).op('i32.mul', 'i32.add').set(base0[o]);
    f.for(i1, 0, n1, 1, () => {
      for (let o = 0; o < k; o++) f.get(base0[o]).get(i1).get(st(o, 1)).op('i32.mul', 'i32.add').set(p[o]);
      f.for(i2, 0, end4, 4, () => {
        body(4);
        advance(4);
      });
      // the last 0–3 elements, one at a time
      f.for(i2, end4, n2, 1, () => {
        body(1);
        advance(1);
      });
    });
  });
  try {
    const bytes = m.encode();
    const module = new WebAssembly.Module(bytes);
    const inst = new WebAssembly.Instance(module, { env: { memory: rt.heap.memory } });
    return Object.assign(inst.exports.run as Run, { bytes });
  } catch {
    return null;
  }
}
