import type { KernelTable } from '../../backend.js';
import type { ElementwiseProgram } from '../../expr/program.js';
import { isContiguous } from '../../shape.js';
import type { View } from '../../storage.js';
import type { FunctionBuilder, Local, ModuleBuilder } from './assembler.js';
import type { WasmElementwise } from './elementwise.js';
import type { Executor } from './matmul.js';
import { ranges } from './ranges.js';
import type { WasmRuntime } from './runtime.js';

/**
 * Layer/RMS normalisation in Wasm, with the arithmetic of the TypeScript reference
 * (backends/cpu/norm.ts) operation for operation, so the results are bit-identical to it:
 * the row mean and the sum of squared deviations in float64 in index order (scalar: the order
 * is the reference's), rstd = 1/√(ss/cols + ε) in float64, then the elementwise pass two
 * elements at a time in float64x2 (the same IEEE operations as the scalar loop) and one float32
 * rounding per element. Rows are independent, so any split over threads gives the same bits.
 *
 * - `norm_fwd(x, w, b, y, mean, rstd, rows, cols, layer, eps)`: y = (x − μ)·rstd·w + b over
 *   contiguous float32 rows (μ = 0 without `layer`: RMS); w and b are [cols] (the caller passes
 *   ones / zeros for a missing one); μ and rstd rounded to float32 into `mean` / `rstd` when
 *   those addresses are not 0.
 * - `norm_bwd(x, g, w, mean, rstd, dx, rows, cols, layer)`: with x̂ = (x − μ)·rstd and
 *   gw = g·w, dx = rstd·(gw − Σgw/cols − x̂·Σ(gw·x̂)/cols) (the Σgw term only with `layer`),
 *   μ and rstd read as float32 [rows].
 *
 * @example
 * emitNorm(m); // then exports.norm_fwd(x, w, b, y, mean, rstd, rows, cols, 1, 1e-5)
 */
export function emitNorm(module: ModuleBuilder): void {
  emitForward(module);
  emitBackward(module);
}

function params(f: FunctionBuilder, n: number): Local[] {
  return Array.from({ length: n }, (_, i) => f.param(i));
}

function locals(f: FunctionBuilder, type: 'i32' | 'f64' | 'v128', n: number): Local[] {
  return Array.from({ length: n }, () => f.local(type));
}

/** Address helpers of element j of a float32 row at `base`. */
function rowOps(f: FunctionBuilder, j: Local) {
  const at = (base: Local) => f.get(base).get(j).i32(2).op('i32.shl', 'i32.add');
  return {
    at,
    /** f64(base[j]) */
    one: (base: Local) => at(base).mem('f32.load').op('f64.promote_f32'),
    /** f64x2(base[j], base[j + 1]) */
    two: (base: Local) => at(base).mem('v128.load64_zero').op('f64x2.promote_low_f32x4'),
  };
}

function emitForward(module: ModuleBuilder): void {
  const f = module.function(
    'norm_fwd',
    ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f64'],
    [],
  );
  const [x, w, b, y, meanOut, rstdOut, rows, cols, layer, eps] = params(f, 10);
  const [r, j, xr, yr, end2] = locals(f, 'i32', 5);
  const [mean, ss, d, rstd] = locals(f, 'f64', 4);
  const [mv, rv] = locals(f, 'v128', 2);
  const { at, one, two } = rowOps(f, j);
  f.get(cols).i32(-2).op('i32.and').set(end2);
  f.get(x).set(xr);
  f.get(y).set(yr);
  f.for(r, 0, rows, 1, () => {
    // μ = (Σ x) / cols, in index order
    f.f64(0).set(mean);
    f.get(layer);
    f.if(() => {
      f.for(j, 0, cols, 1, () => {
        f.get(mean);
        one(xr);
        f.op('f64.add').set(mean);
      });
      f.get(mean).get(cols).op('f64.convert_i32_s', 'f64.div').set(mean);
    });
    // ss = Σ (x − μ)², rstd = 1 / √(ss / cols + ε)
    f.f64(0).set(ss);
    f.for(j, 0, cols, 1, () => {
      f.get(ss);
      one(xr);
      f.get(mean).op('f64.sub').tee(d).get(d).op('f64.mul', 'f64.add').set(ss);
    });
    f.f64(1).get(ss).get(cols).op('f64.convert_i32_s', 'f64.div').get(eps);
    f.op('f64.add', 'f64.sqrt', 'f64.div').set(rstd);
    // y = ((x − μ)·rstd)·w + b, two at a time, then the odd tail
    f.get(mean).op('f64x2.splat').set(mv);
    f.get(rstd).op('f64x2.splat').set(rv);
    f.for(j, 0, end2, 2, () => {
      at(yr);
      two(xr);
      f.get(mv).op('f64x2.sub').get(rv).op('f64x2.mul');
      two(w);
      f.op('f64x2.mul');
      two(b);
      f.op('f64x2.add', 'f32x4.demote_f64x2_zero').store64Lane(0);
    });
    f.get(end2).get(cols).op('i32.lt_s');
    f.if(() => {
      f.get(end2).set(j);
      at(yr);
      one(xr);
      f.get(mean).op('f64.sub').get(rstd).op('f64.mul');
      one(w);
      f.op('f64.mul');
      one(b);
      f.op('f64.add', 'f32.demote_f64').mem('f32.store');
    });
    for (const [out, v] of [
      [meanOut, mean],
      [rstdOut, rstd],
    ] as const) {
      f.get(out);
      f.if(() => {
        f.get(out).get(r).i32(2).op('i32.shl', 'i32.add').get(v).op('f32.demote_f64').mem('f32.store');
      });
    }
    f.get(xr).get(cols).i32(2).op('i32.shl', 'i32.add').set(xr);
    f.get(yr).get(cols).i32(2).op('i32.shl', 'i32.add').set(yr);
  });
}

function emitBackward(module: ModuleBuilder): void {
  const f = module.function('norm_bwd', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const [x, g, w, meanIn, rstdIn, dx, rows, cols, layer] = params(f, 9);
  const [r, j, xr, gr, dr, end2] = locals(f, 'i32', 6);
  const [m, s, gw, sumG, sumGX, a, c] = locals(f, 'f64', 7);
  const [mv, sv, av, cv] = locals(f, 'v128', 4);
  const { at, one, two } = rowOps(f, j);
  const stat = (base: Local) => f.get(base).get(r).i32(2).op('i32.shl', 'i32.add').mem('f32.load');
  f.get(cols).i32(-2).op('i32.and').set(end2);
  f.get(x).set(xr);
  f.get(g).set(gr);
  f.get(dx).set(dr);
  f.for(r, 0, rows, 1, () => {
    f.f64(0).set(m);
    f.get(layer);
    f.if(() => {
      stat(meanIn).op('f64.promote_f32').set(m);
    });
    stat(rstdIn).op('f64.promote_f32').set(s);
    // Σ gw and Σ gw·x̂ in index order
    f.f64(0).set(sumG);
    f.f64(0).set(sumGX);
    f.for(j, 0, cols, 1, () => {
      one(gr);
      one(w);
      f.op('f64.mul').set(gw);
      f.get(sumG).get(gw).op('f64.add').set(sumG);
      f.get(sumGX).get(gw);
      one(xr);
      f.get(m).op('f64.sub').get(s).op('f64.mul', 'f64.mul', 'f64.add').set(sumGX);
    });
    f.f64(0).set(a);
    f.get(layer);
    f.if(() => {
      f.get(sumG).get(cols).op('f64.convert_i32_s', 'f64.div').set(a);
    });
    f.get(sumGX).get(cols).op('f64.convert_i32_s', 'f64.div').set(c);
    // dx = rstd·((gw − a) − x̂·c)
    f.get(m).op('f64x2.splat').set(mv);
    f.get(s).op('f64x2.splat').set(sv);
    f.get(a).op('f64x2.splat').set(av);
    f.get(c).op('f64x2.splat').set(cv);
    f.for(j, 0, end2, 2, () => {
      at(dr);
      f.get(sv);
      two(gr);
      two(w);
      f.op('f64x2.mul').get(av).op('f64x2.sub');
      two(xr);
      f.get(mv).op('f64x2.sub').get(sv).op('f64x2.mul').get(cv).op('f64x2.mul', 'f64x2.sub', 'f64x2.mul');
      f.op('f32x4.demote_f64x2_zero').store64Lane(0);
    });
    f.get(end2).get(cols).op('i32.lt_s');
    f.if(() => {
      f.get(end2).set(j);
      at(dr);
      f.get(s);
      one(gr);
      one(w);
      f.op('f64.mul').get(a).op('f64.sub');
      one(xr);
      f.get(m).op('f64.sub').get(s).op('f64.mul').get(c).op('f64.mul', 'f64.sub', 'f64.mul');
      f.op('f32.demote_f64').mem('f32.store');
    });
    for (const p of [xr, gr, dr]) f.get(p).get(cols).i32(2).op('i32.shl', 'i32.add').set(p);
  });
}

// a row of a few hundred elements costs ≈ 1 µs: a worker pays from about this many elements
const MIN_PARALLEL_NORM = 2 ** 15;

/**
 * `norm` and `normBackward` on the Wasm kernels above: the input programs are read in place
 * when they are plain contiguous float32 views (adopted into the heap if needed) and evaluated
 * into heap scratch by the Wasm elementwise kernel otherwise; weight, bias and the statistics
 * must be contiguous float32 [cols] / [rows]. Anything else (empty shapes, a program the Wasm
 * compiler refuses, strided parameters) runs the TypeScript kernel it is given.
 *
 * @example
 * registerKernels('cpu', wasmNorm(rt, new WasmElementwise(rt), exec, { norm, normBackward }));
 */
export function wasmNorm(
  rt: WasmRuntime,
  ew: WasmElementwise,
  exec: Executor,
  fallback: Pick<KernelTable, 'norm' | 'normBackward'>,
): Pick<KernelTable, 'norm' | 'normBackward'> {
  const mem = rt.storages;
  const vectorOk = (v: View | null) =>
    v === null || (v.storage.dtype === 'float32' && isContiguous(v.shape, v.strides));

  /** Runs `body` with each program's rows at an address (read in place or evaluated into scratch); null when one cannot be. */
  function withRows<T>(
    programs: readonly ElementwiseProgram[],
    n: number,
    body: (addrs: number[]) => T,
  ): T | null {
    const scratch: number[] = [];
    try {
      const addrs: number[] = [];
      for (const p of programs) {
        if (p.root.dtype !== 'float32') return null;
        const v = p.root.kind === 'load' ? p.inputs[p.root.input] : null;
        if (v && v.storage.dtype === 'float32' && isContiguous(v.shape, v.strides)) {
          addrs.push(mem.adoptView(v));
          continue;
        }
        const at = rt.heap.alloc(4 * n);
        scratch.push(at);
        if (!ew.evaluateAt(p, at)) return null;
        addrs.push(at);
      }
      return body(addrs);
    } finally {
      for (const at of scratch) rt.heap.free(at);
    }
  }

  /** A view's address, or a heap scratch block of `cols` copies of `fill` (freed by the caller). */
  function vectorAt(v: View | null, cols: number, fill: number, scratch: number[]): number {
    if (v) return mem.adoptView(v);
    const at = rt.heap.alloc(4 * cols);
    scratch.push(at);
    new Float32Array(rt.heap.memory.buffer, at, cols).fill(fill);
    return at;
  }

  const norm: KernelTable['norm'] = (kind, program, rows, cols, weight, bias, eps, stats) => {
    const n = rows * cols;
    if (n === 0 || !vectorOk(weight) || !vectorOk(bias)) {
      return fallback.norm(kind, program, rows, cols, weight, bias, eps, stats);
    }
    const done = withRows([program], n, ([x]) => {
      const scratch: number[] = [];
      try {
        const w = vectorAt(weight, cols, 1, scratch);
        const b = vectorAt(bias, cols, 0, scratch);
        const y = mem.allocate('float32', n);
        const mean = stats && kind === 'layer' ? mem.allocate('float32', rows) : null;
        const rstd = stats ? mem.allocate('float32', rows) : null;
        const [ya, ma, ra] = [y, mean, rstd].map((s) => (s ? (mem.address(s) ?? 0) : 0));
        const threads = n >= MIN_PARALLEL_NORM ? exec.threads : 1;
        const layer = kind === 'layer' ? 1 : 0;
        const tasks = ranges(rows, threads).map(([r0, r1]) => [
          x + 4 * r0 * cols,
          w,
          b,
          ya + 4 * r0 * cols,
          ma && ma + 4 * r0,
          ra && ra + 4 * r0,
          r1 - r0,
          cols,
          layer,
          eps,
        ]);
        exec.run('norm_fwd', tasks);
        return { y, mean, rstd };
      } finally {
        for (const at of scratch) rt.heap.free(at);
      }
    });
    return done ?? fallback.norm(kind, program, rows, cols, weight, bias, eps, stats);
  };

  const normBackward: KernelTable['normBackward'] = (kind, xp, gp, rows, cols, weight, mean, rstd) => {
    const n = rows * cols;
    const layer = kind === 'layer';
    if (n === 0 || !vectorOk(weight) || !vectorOk(rstd) || (layer && (!mean || !vectorOk(mean)))) {
      return fallback.normBackward(kind, xp, gp, rows, cols, weight, mean, rstd);
    }
    const done = withRows([xp, gp], n, ([x, g]) => {
      const scratch: number[] = [];
      try {
        const w = vectorAt(weight, cols, 1, scratch);
        const ma = layer && mean ? mem.adoptView(mean) : 0;
        const ra = mem.adoptView(rstd);
        const dx = mem.allocate('float32', n);
        const da = mem.address(dx) ?? 0;
        const threads = n >= MIN_PARALLEL_NORM ? exec.threads : 1;
        const tasks = ranges(rows, threads).map(([r0, r1]) => [
          x + 4 * r0 * cols,
          g + 4 * r0 * cols,
          w,
          ma && ma + 4 * r0,
          ra + 4 * r0,
          da + 4 * r0 * cols,
          r1 - r0,
          cols,
          layer ? 1 : 0,
        ]);
        exec.run('norm_bwd', tasks);
        return dx;
      } finally {
        for (const at of scratch) rt.heap.free(at);
      }
    });
    return done ?? fallback.normBackward(kind, xp, gp, rows, cols, weight, mean, rstd);
  };

  return { norm, normBackward };
}
