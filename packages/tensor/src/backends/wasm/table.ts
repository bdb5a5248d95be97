import type { KernelTable, ReduceOp } from '../../backend.js';
import type { DType, TypedArray } from '../../dtype.js';
import { isContiguous, sizeOf } from '../../shape.js';
import type { View } from '../../storage.js';
import { attention as tsAttention, attentionBackward as tsAttentionBackward } from '../cpu/attention.js';
import { crossEntropyRows as tsCrossEntropyRows } from '../cpu/cross-entropy.js';
import { elementwise as tsElementwise } from '../cpu/elementwise.js';
import {
  gather as tsGather,
  indexAdd as tsIndexAdd,
  indexSelect as tsIndexSelect,
  scatterAdd as tsScatterAdd,
} from '../cpu/indexing.js';
import { loraMatmul as tsLoraMatmul } from '../cpu/lora-matmul.js';
import { matmulEpilogue as tsMatmulEpilogue } from '../cpu/matmul-epilogue.js';
import { norm as tsNorm, normBackward as tsNormBackward } from '../cpu/norm.js';
import { adamUpdate as tsAdamUpdate } from '../cpu/optim.js';
import { reduce as tsReduce, softmax as tsSoftmax } from '../cpu/reduce.js';
import { wasmAttention } from './attention.js';
import { wasmCrossEntropy } from './cross-entropy.js';
import { WasmElementwise } from './elementwise.js';
import { wasmMatmulEpilogue } from './epilogue.js';
import { wasmLoraMatmul } from './lora.js';
import { type Executor, wasmMatmul } from './matmul.js';
import { wasmNorm } from './norm.js';
import { ranges } from './ranges.js';
import type { WasmRuntime } from './runtime.js';
import { wasmScatter } from './scatter.js';

// Below these sizes a dispatch to a worker (9 µs there and back, measured) costs more than it saves.
const MIN_PARALLEL_REDUCE = 2 ** 18;
const MIN_PARALLEL_ADAM = 2 ** 16;
// softmax spends ≈ 5 ns per element (exp): a worker pays from a few thousand
const MIN_PARALLEL_SOFTMAX = 2 ** 14;

function contiguous(v: View): boolean {
  return isContiguous(v.shape, v.strides);
}

/**
 * The Wasm kernels as a `KernelTable` part for device 'cpu'. Each takes the Wasm path for the
 * layouts it handles (contiguous float32 rows for reduce, norms, cross-entropy and Adam, rank ≤ 3 for gather; any
 * strides for matmul; scatter.ts says which scatterAdd and indexAdd take) and falls back to the
 * TypeScript kernel otherwise, so it is always correct to register. Operands outside the heap
 * are adopted into it (`WasmStorages.adopt`).
 *
 * @example
 * const rt = await WasmRuntime.create();
 * registerKernels('cpu', wasmKernelTable(rt, await WorkerPool.create(rt, 2)));
 */
export function wasmKernelTable(
  rt: WasmRuntime,
  exec: Executor,
): Pick<
  KernelTable,
  | 'elementwise'
  | 'matmul'
  | 'matmulEpilogue'
  | 'loraMatmul'
  | 'attention'
  | 'attentionBackward'
  | 'reduce'
  | 'softmax'
  | 'norm'
  | 'normBackward'
  | 'crossEntropyRows'
  | 'adamUpdate'
  | 'gather'
  | 'indexSelect'
  | 'scatterAdd'
  | 'indexAdd'
> {
  const mem = rt.storages;

  const ew = new WasmElementwise(rt, exec);

  const elementwise: KernelTable['elementwise'] = (program, dst) =>
    ew.run(program, dst) ?? tsElementwise(program, dst);

  /** Reduces contiguous float32 rows at `x0` into a new storage. */
  const reduceRows = (op: ReduceOp, x0: number, outer: number, inner: number, outDtype: DType) => {
    const out = mem.allocate(outDtype, outer);
    const o = mem.address(out)!;
    const threads = outer * inner >= MIN_PARALLEL_REDUCE ? exec.threads : 1;
    // whole rows per thread: a row's result never depends on the thread count
    const tasks = ranges(outer, threads).map(([a, b]) => [x0 + 4 * a * inner, o + 4 * a, b - a, inner]);
    exec.run(`reduce_${op}`, tasks);
    return out;
  };

  const reduce: KernelTable['reduce'] = (op, program, outer, inner, outDtype) => {
    if (inner === 0 || outer === 0 || program.root.dtype !== 'float32') {
      return tsReduce(op, program, outer, inner, outDtype);
    }
    // a plain view (a program of one load) is reduced where it lies
    const x = program.root.kind === 'load' ? program.inputs[program.root.input] : null;
    if (x) {
      if (!contiguous(x)) return tsReduce(op, program, outer, inner, outDtype);
      return reduceRows(op, mem.adoptView(x), outer, inner, outDtype);
    }
    // a fused prologue is evaluated into scratch by the Wasm elementwise kernel first
    const scratch = rt.heap.alloc(4 * outer * inner);
    try {
      if (!ew.evaluateAt(program, scratch)) return tsReduce(op, program, outer, inner, outDtype);
      return reduceRows(op, scratch, outer, inner, outDtype);
    } finally {
      rt.heap.free(scratch);
    }
  };

  const softmax: KernelTable['softmax'] = (program, rows, cols) => {
    if (rows * cols === 0 || program.root.dtype !== 'float32') return tsSoftmax(program, rows, cols);
    const x = program.root.kind === 'load' ? program.inputs[program.root.input] : null;
    const plain = x !== null && x.storage.dtype === 'float32' && contiguous(x);
    // anything else (a fused prologue, a strided view) is evaluated into scratch first
    const scratch = plain ? 0 : rt.heap.alloc(4 * rows * cols);
    try {
      if (!plain && !ew.evaluateAt(program, scratch)) return tsSoftmax(program, rows, cols);
      const src = plain ? mem.adoptView(x) : scratch;
      const out = mem.allocate('float32', rows * cols);
      const o = mem.address(out)!;
      const threads = rows * cols >= MIN_PARALLEL_SOFTMAX ? exec.threads : 1;
      const tasks = ranges(rows, threads).map(([a, b]) => [
        src + 4 * a * cols,
        o + 4 * a * cols,
        b - a,
        cols,
        0, // no lse
        0, // full rows (no lens)
      ]);
      exec.run('softmax', tasks);
      return out;
    } finally {
      if (!plain) rt.heap.free(scratch);
    }
  };

  const adamUpdate: KernelTable['adamUpdate'] = (param, grad, expAvg, expAvgSq, maxExpAvgSq, s) => {
    const views = maxExpAvgSq
      ? [param, grad, expAvg, expAvgSq, maxExpAvgSq]
      : [param, grad, expAvg, expAvgSq];
    if (views.some((v) => v.storage.dtype !== 'float32' || !contiguous(v))) {
      tsAdamUpdate(param, grad, expAvg, expAvgSq, maxExpAvgSq, s);
      return;
    }
    // parameters and moments move into the heap on their first step and stay there
    const addrs = views.map((v) => mem.adoptView(v));
    const n = sizeOf(param.shape);
    const threads = n >= MIN_PARALLEL_ADAM ? exec.threads : 1;
    const scalars = [s.decay, s.l2, s.beta1, s.beta2, s.stepSize, s.sqrtBc2, s.eps];
    // elementwise: any split gives the same bits (the odd tail uses the same float64 arithmetic)
    const tasks = ranges(n, threads, 2).map(([a, b]) => [...addrs.map((p) => p! + 4 * a), b - a, ...scalars]);
    exec.run(maxExpAvgSq ? 'adam_amsgrad' : 'adam', tasks);
  };

  const gather: KernelTable['gather'] = (x, dim, index) => {
    const rank = x.shape.length;
    if (x.storage.dtype === 'bool' || rank === 0 || rank > 3) {
      return tsGather(x, dim, index);
    }
    // as [d0, d1, d2] with the gathered axis in the middle (size-1 axes of stride 0 added)
    const to3 = (shape: readonly number[], st: readonly number[]) => {
      if (rank === 1) return { dims: [1, shape[0], 1], strides: [0, st[0], 0] };
      if (rank === 2 && dim === 0) return { dims: [1, shape[0], shape[1]], strides: [0, st[0], st[1]] };
      if (rank === 2) return { dims: [shape[0], shape[1], 1], strides: [st[0], st[1], 0] };
      return dim === 1 ? { dims: [...shape], strides: [...st] } : null;
    };
    const xs = to3(x.shape, x.strides);
    const is = to3(index.shape, index.strides);
    if (!xs || !is) return tsGather(x, dim, index);
    const [d0, d1, d2] = is.dims;
    const idx = index.storage.handle as Int32Array;
    // check the indices first, so a bad one raises the TypeScript kernel's error
    const size = x.shape[dim];
    for (let a = 0; a < d0; a++)
      for (let b = 0; b < d1; b++)
        for (let c = 0; c < d2; c++) {
          const i = idx[index.offset + a * is.strides[0] + b * is.strides[1] + c * is.strides[2]];
          if (i < 0 || i >= size) return tsGather(x, dim, index);
        }
    const out = mem.allocate(x.storage.dtype, d0 * d1 * d2);
    const b4 = (s: number[]) => s.map((v) => 4 * v);
    const xa = mem.adoptView(x);
    const ia = mem.adoptView(index);
    exec.run('gather32', [[xa, ...b4(xs.strides), ia, ...b4(is.strides), mem.address(out)!, d0, d1, d2]]);
    return out;
  };

  const indexSelect: KernelTable['indexSelect'] = (x, dim, index) => {
    if (x.shape.length === 0 || !contiguous(x)) return tsIndexSelect(x, dim, index);
    const rows = index.shape[0];
    const size = x.shape[dim];
    const idx = index.storage.handle as Int32Array;
    const picked = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const i = idx[index.offset + r * index.strides[0]];
      if (i < 0 || i >= size) return tsIndexSelect(x, dim, index); // raises its error
      picked[r] = i;
    }
    const outer = sizeOf(x.shape.slice(0, dim));
    const inner = sizeOf(x.shape.slice(dim + 1));
    const out = mem.allocate(x.storage.dtype, outer * rows * inner);
    // contiguous blocks of `inner` elements: a native copy each (an embedding lookup copies rows)
    const src = x.storage.handle as TypedArray;
    const dst = out.handle;
    for (let o = 0; o < outer; o++) {
      for (let r = 0; r < rows; r++) {
        const from = x.offset + (o * size + picked[r]) * inner;
        dst.set(src.subarray(from, from + inner), (o * rows + r) * inner);
      }
    }
    return out;
  };

  const matmul = wasmMatmul(rt, exec);
  const loraMatmul = wasmLoraMatmul(rt, ew, matmul, tsLoraMatmul);
  const matmulEpilogue = wasmMatmulEpilogue(rt, ew, matmul, tsMatmulEpilogue);
  const { attention, attentionBackward } = wasmAttention(rt, exec, {
    attention: tsAttention,
    attentionBackward: tsAttentionBackward,
  });
  const { norm, normBackward } = wasmNorm(rt, ew, exec, { norm: tsNorm, normBackward: tsNormBackward });
  const crossEntropyRows = wasmCrossEntropy(rt, exec, tsCrossEntropyRows);
  const scatter = wasmScatter(rt, exec, elementwise, { scatterAdd: tsScatterAdd, indexAdd: tsIndexAdd });
  return {
    elementwise,
    matmul,
    matmulEpilogue,
    loraMatmul,
    attention,
    attentionBackward,
    reduce,
    softmax,
    norm,
    normBackward,
    crossEntropyRows,
    adamUpdate,
    gather,
    indexSelect,
    ...scatter,
  };
}
