import type { DType } from '../../dtype.js';
import { type ElementwiseProgram, type Expr, exprKey, linearize, type Step } from '../../expr/program.js';
import { coalesce, contiguousStrides, sizeOf } from '../../shape.js';
import type { Storage, View } from '../../storage.js';
import { type Local, ModuleBuilder } from './assembler.js';
import { compileF32x4, f32x4Supports, type Run } from './elementwise-f32x4.js';
import { F64x2Math, MATH_OPS } from './math.js';
import { type Executor, queuedParts } from './matmul.js';
import { emitPhilox, type PhiloxLocals, philoxLocals, pushWord, wasmPhiloxEnabled } from './philox.js';
import { ranges } from './ranges.js';
import type { WasmRuntime } from './runtime.js';

/**
 * Elementwise programs (expr/program.ts) compiled to Wasm: one module per program structure,
 * cached like the TypeScript code generator's loops. Two elements go through each step at once,
 * as float64x2, and every float32 intermediate is rounded to float32 as it is made (demote, then
 * promote): exactly the TypeScript kernel's arithmetic (float64, then `Math.fround` per step), so
 * results are bit-identical to it. Handled: float32, bool and int32 values (int32 arithmetic as
 * in `INT_OPS`), the ops below, random leaves (Philox4x32-10 in Wasm, philox.ts here: the
 * TypeScript kernel's bits), and layouts of up to 3 coalesced dims with any strides.
 */

const FLOAT_OPS = {
  add: 'f64x2.add',
  sub: 'f64x2.sub',
  mul: 'f64x2.mul',
  div: 'f64x2.div',
  maximum: 'f64x2.max',
  minimum: 'f64x2.min',
} as const;
const COMPARE_OPS = {
  eq: 'f64x2.eq',
  ne: 'f64x2.ne',
  lt: 'f64x2.lt',
  le: 'f64x2.le',
  gt: 'f64x2.gt',
  ge: 'f64x2.ge',
} as const;
const UNARY = new Set([
  'neg',
  'abs',
  'sqrt',
  'rsqrt',
  'reciprocal',
  'relu',
  'square',
  'logicalNot',
  ...MATH_OPS,
]);
const ROUNDING = { floor: 'f64x2.floor', ceil: 'f64x2.ceil', round: 'f64x2.nearest' } as const;
const OTHER = new Set(['where', 'logicalAnd', 'logicalOr']);
/**
 * Ops with an int32 result done in float64 (exact for int32 operands) and wrapped to int32 as
 * the TypeScript kernel's `| 0` does; int32 `mul` (Math.imul) and `pow` go to TypeScript.
 */
const INT_OPS = new Set(['add', 'sub', 'maximum', 'minimum', 'neg', 'abs', 'where', 'sign']);

/**
 * Whether every node of the program is one this compiler handles (float32/bool values, the ops
 * above); others run on the TypeScript kernel.
 *
 * @example
 * wasmSupports(loadProgram(view)); // true for a float32, int32 or bool view
 */
export function wasmSupports(program: ElementwiseProgram): boolean {
  if (program.rng?.length && !wasmPhiloxEnabled()) return false;
  const { steps } = linearize(program.root);
  return steps.every((s) => {
    const e = s.node;
    if (e.kind === 'op' && e.dtype === 'int32') return INT_OPS.has(e.op);
    if (e.kind === 'op' && e.args.some((a) => a.dtype === 'int32'))
      return INT_OPS.has(e.op) || e.op in COMPARE_OPS;
    if (e.kind === 'op')
      return (
        e.op in FLOAT_OPS || e.op in COMPARE_OPS || e.op in ROUNDING || UNARY.has(e.op) || OTHER.has(e.op)
      );
    return true;
  });
}

const BYTES: Record<DType, number> = { float32: 4, int32: 4, bool: 1 };

let f32x4Enabled = true;

/**
 * Compiles float32/bool programs with the f32x4 compiler (true, the default) or all with the
 * f64x2 one (false): for tests that compare the two and for benchmarks. Same bits either way.
 *
 * @example
 * useF32x4Elementwise(false); // every program on the f64x2 compiler
 */
export function useF32x4Elementwise(on: boolean): void {
  f32x4Enabled = on;
}

// A dispatch to a worker costs ≈ 9 µs and a program 1–10 ns an element: split from 2^15 elements.
const MIN_PARALLEL_ELEMENTWISE = 2 ** 15;
// a pool call carries 28 numbers, 3 of them the thread's scratch
const MAX_TASK_ARGS = 25;

/** The Wasm elementwise kernel over a runtime's heap. */
export class WasmElementwise {
  private readonly cache = new Map<string, Run | null>();

  /** `exec`: threads for large programs (one thread without it). */
  constructor(
    private readonly rt: WasmRuntime,
    private readonly exec?: Executor,
  ) {}

  /**
   * Evaluates `program` into a new heap storage (or into `dst`, a strided view of its shape,
   * which is returned); null when the program is outside what this compiler handles, or `dst`
   * is read by the program (the caller then runs the TypeScript kernel).
   *
   * @example
   * const out = wasm.run(program) ?? tsElementwise(program);
   */
  run(program: ElementwiseProgram, dst?: View): Storage | null {
    if (dst && program.inputs.some((v) => v.storage === dst.storage)) return null;
    const fn = this.compiled(program, dst ? dst.strides : contiguousStrides(program.shape));
    if (!fn) return null;
    const mem = this.rt.storages;
    const out = dst ? dst.storage : mem.allocate(program.root.dtype, sizeOf(program.shape));
    fn.launch(dst ? mem.adoptView(dst) : mem.address(out)!);
    return out;
  }

  /**
   * Evaluates `program` into contiguous memory at heap address `ptr` (a reduction's prologue,
   * say); false when the program is outside what this compiler handles.
   *
   * @example
   * const tmp = heap.alloc(4 * n);
   * if (wasm.evaluateAt(program, tmp)) reduceRows(tmp);
   */
  evaluateAt(program: ElementwiseProgram, ptr: number): boolean {
    const fn = this.compiled(program, contiguousStrides(program.shape));
    if (!fn) return false;
    fn.launch(ptr);
    return true;
  }

  /** The compiled kernel bound to this program's operands, or null. */
  private compiled(
    program: ElementwiseProgram,
    outStrides: readonly number[],
  ): { launch(out: number): void } | null {
    const n = sizeOf(program.shape);
    const outDtype = program.root.dtype;
    if (n === 0 || !wasmSupports(program)) return null;
    const rng = program.rng ?? [];
    const co = coalesce(program.shape, [
      outStrides,
      ...program.inputs.map((v) => v.strides),
      ...rng.map((r) => r.strides),
    ]);
    if (co.shape.length > 3) return null;
    const pad = 3 - co.shape.length;
    const shape = [...Array<number>(pad).fill(1), ...co.shape];
    const strides = co.strides.map((st) => [...Array<number>(pad).fill(0), ...st]);
    // operands with an inner stride of 1 element are read and written two elements at a time
    const dtypes = [outDtype, ...program.inputs.map((v) => v.storage.dtype)];
    const unit = strides.map((st) => st[2] === 1);
    // equal constants read as one, so subtrees differing only in which copy they read merge
    const root = canonicalConsts(program.root, program.consts);
    const key = `${exprKey(root)}|${dtypes.join(',')}|${unit.map(Number).join('')}|${rng.length}`;
    // float32/bool programs four elements at a time (elementwise-f32x4.ts), the rest as f64x2
    // (constants are float32 values by contract; one that is not keeps its float64 value there)
    const four =
      f32x4Enabled &&
      program.consts.every((v) => Object.is(Math.fround(v), v) || Number.isNaN(v)) &&
      f32x4Supports(program);
    const cacheKey = four ? `4|${key}` : key;
    let fn = this.cache.get(cacheKey);
    if (fn === undefined) {
      fn = four
        ? compileF32x4(this.rt, { ...program, root }, dtypes, unit)
        : compile(this.rt, { ...program, root }, dtypes, unit);
      this.cache.set(cacheKey, fn);
    }
    if (!fn) return null;
    const run = fn;
    const inputs = program.inputs.map((v) => this.rt.storages.adoptView(v));
    const k = dtypes.length;
    const byteStrides = strides.slice(0, k).map((st, o) => st.map((x) => x * BYTES[dtypes[o]]));
    // per random leaf: its position at the first element, its strides (elements), its key
    const args = (out: number, a: number, b: number, axis: number): number[] => {
      const at = (base: number, st: readonly number[]) => base + a * st[axis];
      const part = shape.map((d, i) => (i === axis ? b - a : d));
      const leaves = rng.flatMap((r, j) => [
        at(r.offset, strides[k + j]),
        ...strides[k + j],
        r.key.key0,
        r.key.key1,
      ]);
      return [
        at(out, byteStrides[0]),
        ...inputs.map((p, i) => at(p, byteStrides[i + 1])),
        ...part,
        ...byteStrides.flat(),
        ...program.consts,
        ...leaves,
      ];
    };
    const exec = this.exec;
    // large programs split over threads along their outermost axis of more than one element
    // (the innermost by multiples of 4): every element takes the same arithmetic whichever
    // thread computes it, so the bits do not depend on the split
    const found = shape.findIndex((d) => d > 1);
    const axis = Math.max(found, 0);
    // out, the inputs, the 3-D shape, 3 strides an operand, the constants, 6 numbers a random leaf
    const argc = 1 + inputs.length + 3 + 3 * k + program.consts.length + 6 * rng.length;
    if (!exec?.load || exec.threads < 2 || n < MIN_PARALLEL_ELEMENTWISE || found < 0 || argc > MAX_TASK_ARGS)
      return { launch: (out) => run(...args(out, 0, shape[axis], axis)) };
    exec.load(`ew|${cacheKey}`, run.bytes, run); // once a name: the pool keeps what it loaded
    const parts = ranges(shape[axis], queuedParts(exec.threads), axis === 2 ? 4 : 1);
    return {
      launch: (out) =>
        exec.run(
          `ew|${cacheKey}`,
          parts.map(([a, b]) => args(out, a, b, axis)),
        ),
    };
  }
}

/**
 * `e` with every constant node reading the first constant of equal value (`Object.is`), so that
 * `linearize` merges subtrees that differ only in which copy of a constant they read: the fusion
 * builder gives each use of a literal its own slot, and tanh-GELU's backward reads its
 * constants twice (two tanh of the same argument, the costliest op of the demo's step, became
 * one). The result is the same value for value; the cache key is the rewritten tree's, so a
 * program whose constants differ compiles apart.
 *
 * @example
 * canonicalConsts(op('add', [c(0), c(1)]), [2, 2]); // add(C0, C0)
 */
export function canonicalConsts(e: Expr, consts: readonly number[]): Expr {
  const first = consts.map((v) => consts.findIndex((w) => Object.is(v, w)));
  if (first.every((f, i) => f === i)) return e;
  const walk = (x: Expr): Expr => {
    if (x.kind === 'const') return first[x.index] === x.index ? x : { ...x, index: first[x.index] };
    if (x.kind === 'op') return { ...x, args: x.args.map(walk) };
    if (x.kind === 'cast') return { ...x, arg: walk(x.arg) };
    return x;
  };
  return walk(e);
}

/**
 * `run(out, in…, n0, n1, n2, strides (3 per operand, bytes), consts…, leaves…)`: three nested
 * loops, the innermost two elements per turn (a last odd one alone). Each random leaf passes
 * (position of the first element, its 3 strides in elements, key0, key1).
 */
function compile(rt: WasmRuntime, program: ElementwiseProgram, dtypes: DType[], unit: boolean[]): Run | null {
  const k = dtypes.length; // operands: the output, then the inputs
  const nr = program.rng?.length ?? 0;
  const nc = program.consts.length;
  const m = new ModuleBuilder({
    initial: 1,
    maximum: rt.heap.shared ? rt.heap.maximumPages : undefined,
    shared: rt.heap.shared,
  });
  const { steps, result } = linearize(program.root);
  // Box–Muller calls Math.log and Math.cos themselves (imported): the TypeScript kernel's bits
  const normal = steps.some((s) => s.node.kind === 'random' && s.node.dist === 'normal');
  const log = normal ? m.importFunction('log', ['f64'], ['f64']) : null;
  const cos = normal ? m.importFunction('cos', ['f64'], ['f64']) : null;
  const f = m.function(
    'run',
    [
      ...Array<'i32'>(k + 3 + 3 * k).fill('i32'),
      ...Array<'f64'>(nc).fill('f64'),
      ...Array<'i32'>(6 * nr).fill('i32'),
    ],
    [],
  );
  const ptr = Array.from({ length: k }, (_, i) => f.param(i));
  const [n0, n1, n2] = [f.param(k), f.param(k + 1), f.param(k + 2)];
  const st = (op: number, d: number) => f.param(k + 3 + 3 * op + d);
  const consts = program.consts.map((_, i) => f.param(k + 3 + 3 * k + i));
  const leaf = (j: number, w: number) => f.param(k + 3 + 3 * k + nc + 6 * j + w);
  const [i0, i1, i2, end2] = Array.from({ length: 4 }, () => f.local('i32'));
  const base0 = ptr.map(() => f.local('i32'));
  const p = ptr.map(() => f.local('i32'));
  // random leaves' positions, stepped like the operands' addresses (in elements)
  const rBase0 = Array.from({ length: nr }, () => f.local('i32'));
  const rPos = Array.from({ length: nr }, () => f.local('i32'));
  const one = f.local('v128');
  const zero = f.local('v128');
  const t = steps.map(() => f.local('v128'));
  const math = new F64x2Math(f);
  f.f64(1).op('f64x2.splat').set(one);
  f.f64(0).op('f64x2.splat').set(zero);
  f.get(n2).i32(-2).op('i32.and').set(end2);
  const fround = () => f.op('f32x4.demote_f64x2_zero', 'f64x2.promote_low_f32x4');
  const toBool = () => f.get(one).op('v128.and'); // a lane mask → 1.0 / 0.0
  // v − 2^32·floor((v + 2^31) / 2^32): int32 wrapping of an exact integer; NaN and ±Inf → 0 (as `| 0`)
  const wrapped = f.local('v128');
  const wrapInt = () => {
    f.set(wrapped).get(wrapped).get(wrapped);
    f.f64(2 ** 31).op('f64x2.splat', 'f64x2.add');
    f.f64(2 ** -32).op('f64x2.splat', 'f64x2.mul', 'f64x2.floor');
    f.f64(2 ** 32)
      .op('f64x2.splat', 'f64x2.mul', 'f64x2.sub')
      .set(wrapped);
    f.get(wrapped).get(zero).get(wrapped).get(wrapped).op('f64x2.eq', 'v128.bitselect');
  };

  const load = (input: number, pair: boolean) => {
    const o = input + 1;
    const scalar = (offset: Local | null) => {
      f.get(p[o]);
      if (offset) f.get(offset).op('i32.add');
      if (dtypes[o] === 'float32') f.mem('f32.load').op('f64.promote_f32');
      else if (dtypes[o] === 'int32') f.mem('i32.load').op('f64.convert_i32_s');
      else f.mem('i32.load8_u').op('f64.convert_i32_u');
    };
    if (pair && unit[o] && dtypes[o] === 'float32') {
      f.get(p[o]).mem('v128.load64_zero').op('f64x2.promote_low_f32x4');
      return;
    }
    scalar(null);
    f.op('f64x2.splat');
    if (pair) {
      scalar(st(o, 2));
      f.lane('f64x2.replace_lane', 1);
    }
  };

  // each random step keeps the words of its last counter: four (uniform) or two (normal)
  // consecutive elements share one Philox, as the TypeScript kernel's `philoxWord` cache does
  const draws = new Map<Step, { ph: PhiloxLocals; last: Local; pos: Local; ctr: Local; w: Local }>();
  for (const s of steps) {
    if (s.node.kind !== 'random') continue;
    const d = {
      ph: philoxLocals(f),
      last: f.local('i32'),
      pos: f.local('i32'),
      ctr: f.local('i32'),
      w: f.local('i32'),
    };
    draws.set(s, d);
    // no counter yet: positions are below 2^30 (the heap holds < 2^32 bytes), so ⌊pos/2⌋ ≠ 2^32 − 1
    f.i32(-1).set(d.last);
  }
  const uniformOf = (w: () => void) => {
    w();
    f.i32(8)
      .op('i32.shr_u', 'f64.convert_i32_u')
      .f64(2 ** -24)
      .op('f64.mul');
  };
  /** Pushes the f64 value of random step `s` at the position in `d.pos`. */
  const randomLane = (s: Step) => {
    const e = s.node;
    if (e.kind !== 'random') throw new Error('internal: not a random step');
    const d = draws.get(s)!;
    const shift = e.dist === 'uniform' ? 2 : 1;
    f.get(d.pos).i32(shift).op('i32.shr_u').set(d.ctr);
    f.get(d.ctr).get(d.last).op('i32.ne');
    f.if(() => {
      f.get(d.ctr).set(d.ph.x[0]);
      for (const x of d.ph.x.slice(1)) f.i32(0).set(x);
      emitPhilox(f, d.ph, leaf(e.index, 4), leaf(e.index, 5));
      f.get(d.ctr).set(d.last);
    });
    if (e.dist === 'uniform') {
      f.get(d.pos).i32(3).op('i32.and').set(d.w);
      uniformOf(() => pushWord(f, d.ph, d.w));
      return;
    }
    // √(−2 ln u₁)·cos(2π u₂), u₁ = 1 − U(word 2(pos&1)), u₂ = U(word 2(pos&1) + 1), then float32
    f.get(d.pos).i32(1).op('i32.and').i32(1).op('i32.shl').set(d.w);
    f.f64(-2).f64(1);
    uniformOf(() => pushWord(f, d.ph, d.w));
    f.op('f64.sub').call(log!, m).op('f64.mul', 'f64.sqrt');
    f.f64(2 * Math.PI);
    f.get(d.w).i32(1).op('i32.or').set(d.w);
    uniformOf(() => pushWord(f, d.ph, d.w));
    f.op('f64.mul').call(cos!, m).op('f64.mul', 'f32.demote_f64', 'f64.promote_f32');
  };
  const random = (s: Step, pair: boolean) => {
    const e = s.node;
    if (e.kind !== 'random') throw new Error('internal: not a random step');
    const d = draws.get(s)!;
    f.get(rPos[e.index]).set(d.pos);
    randomLane(s);
    f.op('f64x2.splat');
    if (pair) {
      f.get(rPos[e.index]).get(leaf(e.index, 3)).op('i32.add').set(d.pos);
      randomLane(s);
      f.lane('f64x2.replace_lane', 1);
    }
  };

  const step = (s: Step, pair: boolean) => {
    const e = s.node;
    const arg = (i: number) => f.get(t[s.args[i]]);
    switch (e.kind) {
      case 'load':
        load(e.input, pair);
        return;
      case 'const':
        f.get(consts[e.index]).op('f64x2.splat');
        return;
      case 'random':
        random(s, pair);
        return;
      case 'cast':
        arg(0);
        // float → bool is `!= 0`; bool → float and same-dtype casts keep the value
        if (e.dtype === 'bool' && e.arg.dtype !== 'bool') {
          f.get(zero).op('f64x2.ne');
          toBool();
        } else if (e.dtype === 'int32' && e.arg.dtype === 'float32') {
          f.op('f64x2.trunc');
          wrapInt();
        } else if (e.dtype === 'float32' && e.arg.dtype === 'int32') fround();
        return;
      case 'op': {
        const op = e.op;
        if (op in FLOAT_OPS) {
          arg(0);
          arg(1);
          f.op(FLOAT_OPS[op as keyof typeof FLOAT_OPS]);
        } else if (op in COMPARE_OPS) {
          arg(0);
          arg(1);
          f.op(COMPARE_OPS[op as keyof typeof COMPARE_OPS]);
          toBool();
        } else if (op === 'where') {
          arg(1);
          arg(2);
          arg(0);
          f.get(zero).op('f64x2.ne', 'v128.bitselect');
        } else if (op === 'logicalAnd' || op === 'logicalOr') {
          arg(0);
          f.get(zero).op('f64x2.ne');
          arg(1);
          f.get(zero).op('f64x2.ne', op === 'logicalAnd' ? 'v128.and' : 'v128.or');
          toBool();
        } else if (op === 'logicalNot') {
          arg(0);
          f.get(zero).op('f64x2.eq');
          toBool();
        } else if (op === 'neg') arg(0).op('f64x2.neg');
        else if (op === 'abs') arg(0).op('f64x2.abs');
        else if (op === 'sqrt') arg(0).op('f64x2.sqrt');
        else if (op === 'rsqrt') f.get(one).get(t[s.args[0]]).op('f64x2.sqrt', 'f64x2.div');
        else if (op === 'reciprocal') f.get(one).get(t[s.args[0]]).op('f64x2.div');
        else if (op === 'relu') arg(0).get(zero).op('f64x2.max');
        else if (op === 'square') arg(0).get(t[s.args[0]]).op('f64x2.mul');
        else if (op in ROUNDING) arg(0).op(ROUNDING[op as keyof typeof ROUNDING]);
        else if (MATH_OPS.has(op)) math[op as 'exp'](t[s.args[0]]);
        else throw new Error(`wasm elementwise: unsupported op ${op}`);
        if (e.dtype === 'float32') fround();
        else if (e.dtype === 'int32' && op !== 'where') wrapInt();
        return;
      }
    }
  };

  const store = (pair: boolean) => {
    const value = t[result];
    if (dtypes[0] === 'float32') {
      if (pair && unit[0]) {
        f.get(p[0]).get(value).op('f32x4.demote_f64x2_zero').store64Lane(0);
        return;
      }
      f.get(p[0]).get(value).lane('f64x2.extract_lane', 0).op('f32.demote_f64').mem('f32.store');
      if (pair) {
        f.get(p[0]).get(st(0, 2)).op('i32.add');
        f.get(value).lane('f64x2.extract_lane', 1).op('f32.demote_f64').mem('f32.store');
      }
      return;
    }
    // int32 values are wrapped already (in range, never NaN): the truncation cannot trap
    const store = dtypes[0] === 'int32' ? 'i32.store' : 'i32.store8';
    f.get(p[0]).get(value).lane('f64x2.extract_lane', 0).op('i32.trunc_f64_s').mem(store);
    if (pair) {
      f.get(p[0]).get(st(0, 2)).op('i32.add');
      f.get(value).lane('f64x2.extract_lane', 1).op('i32.trunc_f64_s').mem(store);
    }
  };

  const body = (pair: boolean) => {
    steps.forEach((s, i) => {
      step(s, pair);
      f.set(t[i]);
    });
    store(pair);
  };

  f.for(i0, 0, n0, 1, () => {
    for (let o = 0; o < k; o++) f.get(ptr[o]).get(i0).get(st(o, 0)).op('i32.mul', 'i32.add').set(base0[o]);
    for (let j = 0; j < nr; j++)
      f.get(leaf(j, 0)).get(i0).get(leaf(j, 1)).op('i32.mul', 'i32.add').set(rBase0[j]);
    f.for(i1, 0, n1, 1, () => {
      for (let o = 0; o < k; o++) f.get(base0[o]).get(i1).get(st(o, 1)).op('i32.mul', 'i32.add').set(p[o]);
      for (let j = 0; j < nr; j++)
        f.get(rBase0[j]).get(i1).get(leaf(j, 2)).op('i32.mul', 'i32.add').set(rPos[j]);
      f.for(i2, 0, end2, 2, () => {
        body(true);
        for (let o = 0; o < k; o++) f.get(p[o]).get(st(o, 2)).i32(1).op('i32.shl', 'i32.add').set(p[o]);
        for (let j = 0; j < nr; j++)
          f.get(rPos[j]).get(leaf(j, 3)).i32(1).op('i32.shl', 'i32.add').set(rPos[j]);
      });
      f.get(end2).get(n2).op('i32.lt_s');
      f.if(() => body(false));
    });
  });
  try {
    const bytes = m.encode();
    const module = new WebAssembly.Module(bytes);
    const inst = new WebAssembly.Instance(module, {
      env: { memory: rt.heap.memory, log: Math.log, cos: Math.cos },
    });
    return Object.assign(inst.exports.run as Run, { bytes });
  } catch {
    return null;
  }
}
