import type { AttentionDropout, AttentionParams, KernelTable } from '../../backend.js';
import { attentionKeep } from '../../philox.js';
import type { View } from '../../storage.js';
import {
  ATTENTION_DESC_BYTES,
  ATTENTION_FIELDS,
  ATTENTION_SCALE_AT,
  type AttentionField,
} from './attention-driver.js';
import { type Executor, queuedParts } from './matmul.js';
import { wasmPhiloxEnabled } from './philox.js';
import { ranges } from './ranges.js';
import type { WasmRuntime } from './runtime.js';

// rows per block of the causal attention gemms (attention-driver.ts `attn_gemm`)
let causalBlockRows = 32;

/**
 * Rows per block of the causal attention gemms (0: whole gemms, the masked triangle computed
 * and thrown away): for tests and benchmarks that compare the two. Same bits either way.
 *
 * @example
 * setCausalBlockRows(0); // the whole [L, S] products
 */
export function setCausalBlockRows(rows: number): void {
  causalBlockRows = rows;
}

let exactSoftmax = false;

/**
 * Which row softmax the attention runs: 'f32' (the default, `softmax_f32`) or 'f64' (the
 * TypeScript kernel's bits, 3× slower): for benchmarks that compare the two.
 *
 * @example
 * setAttentionSoftmax('f64'); // the float64 softmax kernel
 */
export function setAttentionSoftmax(kind: 'f32' | 'f64'): void {
  exactSoftmax = kind === 'f64';
}

/** A float32 view's strides in bytes. */
const four = (x: View): number[] => x.strides.map((st) => 4 * st);

/**
 * `attention` and `attentionBackward` on the Wasm gemm, by the Wasm driver of
 * attention-driver.ts: heads split over the threads (query heads forward, kv heads with their
 * query heads backward), each head's sequence in Wasm. Per head, the [L, S] scores are a gemm
 * into the thread's scratch (L·S floats, freed after the call), the row scaling and masking, the
 * dS step and the sums into dk/dv Wasm row loops (attention-rows.ts, bit-identical to the
 * JavaScript loops they replaced), the row softmax (with lse) the Wasm float32 softmax kernel
 * (`softmax_f32`), and P·V, dS·K, dSᵀ·Q, Pᵀ·dO are gemms again. So only one head's score matrix
 * exists a thread at a time (the TypeScript reference keeps one row).
 * Semantics follow backends/cpu/attention.ts: masked keys (causal, bool false) are −∞, a fully
 * masked row gives NaN and lse −∞, float masks add. Dropout (params.dropout): the head's factors
 * z = keep ? scale : 0 (`attn_dropmask`, Philox in Wasm: the mask of philox.ts `attentionKeep`,
 * the same on every backend) multiply P after the softmax (so the lse stays the undropped one)
 * before P·V; in the backward they multiply dP = dO·vᵀ before the dS step and P before Pᵀ·dO.
 * Differences: probabilities are rounded to float32 before P·V, the backward takes p as
 * exp(s − lse) of the scores again and the forward's lse (`softmax_from_lse`, one pass where a
 * softmax makes three), and the softmax and gemms are float32 (≈ 1e-6 relative); a masked key
 * whose v is ±∞ contributes 0·∞ = NaN where the reference skips it. The bits do not depend on
 * the thread count: a head runs the same calls whichever thread takes it.
 *
 * @example
 * registerKernels('cpu', wasmAttention(rt, exec, { attention, attentionBackward })); // fallback: the TS kernels (empty shapes)
 */
export function wasmAttention(
  rt: WasmRuntime,
  exec: Executor,
  fallback: Pick<KernelTable, 'attention' | 'attentionBackward'>,
): Pick<KernelTable, 'attention' | 'attentionBackward'> {
  const mem = rt.storages;
  const dims = (q: View, k: View, v: View) => {
    const [b, h, l, e] = q.shape;
    return { b, h, hkv: k.shape[1], l, s: k.shape[2], e, ev: v.shape[3] };
  };
  type Dims = ReturnType<typeof dims>;
  const zero = (d: Dims) => d.b * d.h * d.l * d.s * d.e * d.ev === 0;

  /** Heap scratch that is freed however the call ends. */
  const scratch = <T>(use: (alloc: (bytes: number) => number) => T): T => {
    const held: number[] = [];
    try {
      return use((bytes) => {
        const a = rt.heap.alloc(Math.max(4, bytes));
        held.push(a);
        return a;
      });
    } finally {
      for (const a of held) rt.heap.free(a);
    }
  };

  /** The descriptor both directions read (attention-driver.ts), written into heap bytes at `at`. */
  const describe = (
    at: number,
    fields: Partial<Record<AttentionField, number>>,
    scale: number,
    dropScale: number,
  ): void => {
    const view = new DataView(rt.heap.memory.buffer, at, ATTENTION_DESC_BYTES);
    ATTENTION_FIELDS.forEach((name, i) => {
      view.setInt32(4 * i, fields[name] ?? 0, true);
    });
    view.setFloat64(ATTENTION_SCALE_AT, scale, true);
    view.setFloat32(ATTENTION_SCALE_AT + 8, dropScale, true);
  };

  /** Fields of q, k, v, the mask and the shape, as byte addresses and byte strides. */
  const common = (q: View, k: View, v: View, mask: View | null, p: AttentionParams, d: Dims) => {
    const [qB, qH, qrs, qcs] = four(q);
    const [kB, kH, krs, kcs] = four(k);
    const [vB, vH, vrs, vcs] = four(v);
    let m: Partial<Record<AttentionField, number>> = {};
    if (mask) {
      const bytes = mask.storage.dtype === 'bool' ? 1 : 4;
      const [mB, mH, mrs, mcs] = mask.strides.map((st) => bytes * st);
      m = { mask: mem.adoptView(mask), mB, mH, mrs, mcs, kind: bytes === 1 ? 2 : 1 };
    }
    const blocks = p.causal && d.l === d.s && causalBlockRows > 0 && d.l > causalBlockRows;
    return {
      H: d.h,
      hkv: d.hkv,
      group: d.h / d.hkv,
      ...{ q: mem.adoptView(q), qB, qH, qrs, qcs },
      ...{ k: mem.adoptView(k), kB, kH, krs, kcs },
      ...{ v: mem.adoptView(v), vB, vH, vrs, vcs },
      ...m,
      ...{ l: d.l, s: d.s, e: d.e, ev: d.ev, causal: p.causal ? 1 : 0, rows: blocks ? causalBlockRows : 0 },
      exact: exactSoftmax ? 1 : 0,
    };
  };

  /** Dropout fields; with the TypeScript Philox (a benchmark's switch) every head's factors, in `zAll`. */
  const dropFields = (
    drop: AttentionDropout | null,
    d: Dims,
    alloc: (bytes: number) => number,
  ): Partial<Record<AttentionField, number>> => {
    if (!drop) return {};
    const { key0, key1 } = drop.key;
    let zAll = 0;
    if (!wasmPhiloxEnabled()) {
      // the TypeScript mask it replaced (bench/dropout.ts compares them)
      zAll = alloc(4 * d.b * d.h * d.l * d.s);
      const zs = new Float32Array(rt.heap.memory.buffer, zAll, d.b * d.h * d.l * d.s);
      for (let bh = 0; bh < d.b * d.h; bh++) {
        for (let i = 0; i < d.l; i++) {
          for (let j = 0; j < d.s; j++)
            zs[(bh * d.l + i) * d.s + j] = attentionKeep(bh, i, j, key0, key1, drop.threshold)
              ? drop.scale
              : 0;
        }
      }
    }
    return { drop: 1, key0, key1, threshold: drop.threshold, zAll };
  };

  /**
   * The tasks of items 0..n: [desc, i0, i1, then a scratch block of each of `sizes` bytes (0: none)],
   * in ranges the threads take from the pool's queue (queuedParts); one range a thread where a
   * range's scratch would pass 4 MiB.
   */
  const itemTasks = (desc: number, n: number, sizes: number[], alloc: (bytes: number) => number) => {
    const bytes = sizes.reduce((a, b) => a + b, 0);
    const parts = Math.min(bytes <= 2 ** 22 ? queuedParts(exec.threads) : exec.threads, n);
    return ranges(n, parts).map(([i0, i1]) => [desc, i0, i1, ...sizes.map((b) => (b > 0 ? alloc(b) : 0))]);
  };

  const attention: KernelTable['attention'] = (q, k, v, mask, params) => {
    const d = dims(q, k, v);
    if (zero(d)) return fallback.attention(q, k, v, mask, params);
    const rows = d.b * d.h * d.l;
    const out = mem.allocate('float32', rows * d.ev);
    const lse = params.lse ? mem.allocate('float32', rows) : null;
    const drop = params.dropout ?? null;
    scratch((alloc) => {
      const desc = alloc(ATTENTION_DESC_BYTES);
      const fields = { ...common(q, k, v, mask, params, d), ...dropFields(drop, d, alloc) };
      describe(
        desc,
        { ...fields, out: mem.address(out)!, lse: lse ? mem.address(lse)! : 0 },
        params.scale,
        drop?.scale ?? 1,
      );
      const ls = d.l * d.s;
      // scratch per range: scores/P, the hard-mask bytes, row lengths, dropout factors
      const sizes = [4 * ls, ls, 4 * d.l, drop ? 4 * ls : 0];
      exec.run('attn_fwd_items', itemTasks(desc, d.b * d.h, sizes, alloc));
    });
    return { out, lse };
  };

  const attentionBackward: KernelTable['attentionBackward'] = (q, k, v, mask, out, grad, lse, params) => {
    const d = dims(q, k, v);
    if (zero(d)) return fallback.attentionBackward(q, k, v, mask, out, grad, lse, params);
    const dq = mem.allocate('float32', d.b * d.h * d.l * d.e);
    const dk = mem.allocate('float32', d.b * d.hkv * d.s * d.e);
    const dv = mem.allocate('float32', d.b * d.hkv * d.s * d.ev);
    for (const s of [dq, dk, dv]) s.handle.fill(0);
    const drop = params.dropout ?? null;
    scratch((alloc) => {
      const desc = alloc(ATTENTION_DESC_BYTES);
      const [gB, gH, grs, gcs] = four(grad);
      const [oB, oH, ors, ocs] = four(out);
      const [lB, lH, lss] = four(lse);
      describe(
        desc,
        {
          ...common(q, k, v, mask, params, d),
          ...dropFields(drop, d, alloc),
          ...{ g: mem.adoptView(grad), gB, gH, grs, gcs },
          ...{ o: mem.adoptView(out), oB, oH, ors, ocs },
          ...{ lin: mem.adoptView(lse), lB, lH, lss },
          ...{ dq: mem.address(dq)!, dk: mem.address(dk)!, dv: mem.address(dv)! },
          dvWhole: mask ? 1 : 0,
        },
        params.scale,
        drop?.scale ?? 1,
      );
      const ls = d.l * d.s;
      // scratch per range: P, dP/dS, the hard-mask bytes, row lengths, a head's dk or dv, dropout factors
      const sizes = [4 * ls, 4 * ls, ls, 4 * d.l, 4 * d.s * Math.max(d.e, d.ev, 1), drop ? 4 * ls : 0];
      exec.run('attn_bwd_items', itemTasks(desc, d.b * d.hkv, sizes, alloc));
    });
    return { dq, dk, dv };
  };

  return { attention, attentionBackward };
}
