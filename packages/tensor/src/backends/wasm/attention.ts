import type { AttentionDropout, AttentionParams, KernelTable } from '../../backend.js';
import { attentionKeep } from '../../philox.js';
import type { View } from '../../storage.js';
import type { Executor } from './matmul.js';
import { wasmPhiloxEnabled } from './philox.js';
import { ranges } from './ranges.js';
import type { WasmRuntime } from './runtime.js';

/**
 * Row blocks of the causal triangle for a causal head with as many queries as keys (null
 * otherwise, or when one block would hold it all): the gemms then skip the products of masked
 * (query, key) pairs. CAUSAL_BLOCK rows a block.
 */
function causalBlocks(d: { l: number; s: number }, p: AttentionParams): [number, number][] | null {
  if (!p.causal || d.l !== d.s || causalBlockRows <= 0 || d.l <= causalBlockRows) return null;
  const out: [number, number][] = [];
  for (let a = 0; a < d.l; a += causalBlockRows) out.push([a, Math.min(d.l, a + causalBlockRows)]);
  return out;
}

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

// The dropout mask costs ≈ 6 ns a probability on one thread (a Philox per four); a dispatch to a
// worker 9 µs: heads of 8192 probabilities (≈ 50 µs) and more are split by rows.
const MIN_PARALLEL_DROPMASK = 2 ** 13;

/**
 * `attention` and `attentionBackward` on the Wasm gemm, one (batch, head) at a time: the [L, S]
 * scores of that head are a gemm into heap scratch (L·S floats, freed after the call), the row
 * scaling and masking, the dS step and the sums into dk/dv Wasm row loops (attention-rows.ts,
 * bit-identical to the JavaScript loops they replaced), the row softmax (with lse) the Wasm
 * softmax kernel, and P·V, dS·K, dSᵀ·Q, Pᵀ·dO are gemms again.
 * So only one head's score matrix exists at a time (the TypeScript reference keeps one row).
 * Semantics follow backends/cpu/attention.ts: masked keys (causal, bool false) are −∞, a fully
 * masked row gives NaN and lse −∞, float masks add. Dropout (params.dropout): the head's factors
 * z = keep ? scale : 0 (`attn_dropmask`, Philox in Wasm: the mask of philox.ts `attentionKeep`,
 * the same on every backend) multiply P after the softmax (so the lse stays the undropped one) before P·V; in the backward
 * they multiply dP = dO·vᵀ before the dS step and P before Pᵀ·dO. Differences: probabilities are rounded to
 * float32 before P·V, the backward takes p as the row softmax of the scores again (what
 * exp(s − lse) is for the forward's lse, which now only marks rows with no key), and the gemms
 * accumulate in float32 (≈ 1e-6 relative); a masked key whose
 * v is ±∞ contributes 0·∞ = NaN where the reference skips it.
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

  /** C[m, n] = A[m, k]·B[k, n] at byte addresses with byte strides (C rows ldc bytes apart). */
  const gemm = (
    pa: number,
    rsa: number,
    csa: number,
    pb: number,
    rsb: number,
    csb: number,
    pc: number,
    ldc: number,
    m: number,
    k: number,
    n: number,
  ) => {
    exec.run('gemm', [[pa, 0, rsa, csa, pb, 0, rsb, csb, pc, 0, ldc, 1, m, k, n]]);
  };

  /**
   * The same product over the causal triangle only, by row blocks [a, b) of C (`blocks`; null: the
   * whole gemm). 'cols': C[a:b, 0:b] = A[a:b]·B[:, 0:b] (scores, dP: the keys past the block's last
   * query are masked, never read); 'inner': C[a:b] = A[a:b, 0:b]·B[0:b] (P·V, dS·K: A is 0 past
   * the diagonal); 'lower': C[a:b] = A[a:b, a:]·B[a:] (dSᵀ·Q, Pᵀ·dO: key j has no query before j).
   * The products left out are exact zeros at the end or the start of each sum, so for finite
   * inputs the bits are the whole gemm's (a ±∞ or NaN in q, k, v or dO no longer reaches the keys
   * masked for it through 0·∞, which the TypeScript reference skips as well).
   */
  const causalGemm = (
    blocks: readonly (readonly [number, number])[] | null,
    mode: 'cols' | 'inner' | 'lower',
    pa: number,
    rsa: number,
    csa: number,
    pb: number,
    rsb: number,
    csb: number,
    pc: number,
    ldc: number,
    m: number,
    k: number,
    n: number,
  ) => {
    if (!blocks) {
      gemm(pa, rsa, csa, pb, rsb, csb, pc, ldc, m, k, n);
      return;
    }
    for (const [a, b] of blocks) {
      const lower = mode === 'lower';
      gemm(
        pa + a * rsa + (lower ? a * csa : 0),
        rsa,
        csa,
        pb + (lower ? a * rsb : 0),
        rsb,
        csb,
        pc + a * ldc,
        ldc,
        b - a,
        mode === 'inner' ? b : lower ? k - a : k,
        mode === 'cols' ? b : n,
      );
    }
  };

  interface Head {
    qa: number;
    ka: number;
    va: number;
    kh: number;
  }
  const dims = (q: View, k: View, v: View) => {
    const [b, h, l, e] = q.shape;
    return { b, h, hkv: k.shape[1], l, s: k.shape[2], e, ev: v.shape[3] };
  };

  /**
   * Scores of head (bi, hi) into scratch `sp` ([L, S] float32), masked: −∞ where the key is
   * masked (and `hard` set there), scale·q·k (+ a float mask) elsewhere.
   */
  const scores = (
    q: View,
    k: View,
    mask: View | null,
    p: AttentionParams,
    d: ReturnType<typeof dims>,
    bi: number,
    hi: number,
    head: Head,
    sp: number,
    hard: number,
    lens: number,
  ) => {
    causalGemm(
      causalBlocks(d, p),
      'cols',
      head.qa,
      4 * q.strides[2],
      4 * q.strides[3],
      head.ka,
      4 * k.strides[3],
      4 * k.strides[2],
      sp,
      4 * d.s,
      d.l,
      d.e,
      d.s,
    );
    // scale and mask in place, marking masked keys in `hard` (attention-rows.ts: the Wasm row loop)
    let ma = 0;
    let [mrs, mcs, kind] = [0, 0, 0];
    if (mask) {
      const bytes = mask.storage.dtype === 'bool' ? 1 : 4;
      ma = mem.adoptView(mask) + bytes * (bi * mask.strides[0] + hi * mask.strides[1]);
      [mrs, mcs, kind] = [bytes * mask.strides[2], bytes * mask.strides[3], bytes === 1 ? 2 : 1];
    }
    exec.run('attn_mask', [[sp, hard, lens, d.l, d.s, p.causal ? 1 : 0, ma, mrs, mcs, kind, p.scale]]);
  };

  const headOf = (q: View, k: View, v: View, d: ReturnType<typeof dims>, bi: number, hi: number): Head => {
    const kh = Math.floor(hi / (d.h / d.hkv));
    return {
      kh,
      qa: mem.adoptView(q) + 4 * (bi * q.strides[0] + hi * q.strides[1]),
      ka: mem.adoptView(k) + 4 * (bi * k.strides[0] + kh * k.strides[1]),
      va: mem.adoptView(v) + 4 * (bi * v.strides[0] + kh * v.strides[1]),
    };
  };

  const zero = (d: ReturnType<typeof dims>) => d.b * d.h * d.l * d.s * d.e * d.ev === 0;

  /** The dropout factors of head `bh` ([L, S] row-major) into heap scratch `z`: whole rows per thread. */
  const dropFactors = (drop: AttentionDropout, bh: number, l: number, s: number, z: number) => {
    const { key0, key1 } = drop.key;
    if (!wasmPhiloxEnabled()) {
      // the TypeScript mask it replaced (bench/dropout.ts compares them)
      const zs = new Float32Array(rt.heap.memory.buffer, z, l * s);
      for (let i = 0; i < l; i++) {
        for (let j = 0; j < s; j++)
          zs[i * s + j] = attentionKeep(bh, i, j, key0, key1, drop.threshold) ? drop.scale : 0;
      }
      return;
    }
    const threads = l * s >= MIN_PARALLEL_DROPMASK ? exec.threads : 1;
    const tasks = ranges(l, threads).map(([a, b]) => [
      z,
      a,
      b,
      s,
      bh,
      key0,
      key1,
      drop.threshold,
      drop.scale,
    ]);
    exec.run('attn_dropmask', tasks);
  };
  /** x[0..n) *= z[0..n) for float32 heap arrays at byte addresses `at` and `z`. */
  const scaleBy = (at: number, z: number, n: number) => {
    exec.run('mul_f32', [[at, z, n]]);
  };

  const attention: KernelTable['attention'] = (q, k, v, mask, params) => {
    const d = dims(q, k, v);
    if (zero(d)) return fallback.attention(q, k, v, mask, params);
    const rows = d.b * d.h * d.l;
    const out = mem.allocate('float32', rows * d.ev);
    const lse = params.lse ? mem.allocate('float32', rows) : null;
    const sp = rt.heap.alloc(4 * Math.max(1, d.l * d.s));
    const hard = rt.heap.alloc(Math.max(1, d.l * d.s));
    const lens = rt.heap.alloc(4 * Math.max(1, d.l));
    const drop = params.dropout ?? null;
    const z = drop ? rt.heap.alloc(4 * Math.max(1, d.l * d.s)) : 0;
    const blocks = causalBlocks(d, params);
    try {
      for (let bi = 0; bi < d.b; bi++) {
        for (let hi = 0; hi < d.h; hi++) {
          const head = headOf(q, k, v, d, bi, hi);
          scores(q, k, mask, params, d, bi, hi, head, sp, hard, lens);
          const row0 = (bi * d.h + hi) * d.l;
          // P = softmax of the masked rows in place, lse beside (the Wasm softmax kernel)
          const lseAt = lse ? mem.address(lse)! + 4 * row0 : 0;
          // rows stop at their last kept key (lens): the causal mask's −∞ tail is never exponentiated
          exec.run('softmax', [[sp, sp, d.l, d.s, lseAt, lens]]);
          if (drop) {
            dropFactors(drop, bi * d.h + hi, d.l, d.s, z);
            scaleBy(sp, z, d.l * d.s);
          }
          const oa = mem.address(out)! + 4 * row0 * d.ev;
          causalGemm(
            blocks,
            'inner',
            sp,
            4 * d.s,
            4,
            head.va,
            4 * v.strides[2],
            4 * v.strides[3],
            oa,
            4 * d.ev,
            d.l,
            d.s,
            d.ev,
          );
        }
      }
    } finally {
      rt.heap.free(sp);
      rt.heap.free(hard);
      rt.heap.free(lens);
      if (drop) rt.heap.free(z);
    }
    return { out, lse };
  };

  const attentionBackward: KernelTable['attentionBackward'] = (q, k, v, mask, out, grad, lse, params) => {
    const d = dims(q, k, v);
    if (zero(d)) return fallback.attentionBackward(q, k, v, mask, out, grad, lse, params);
    const dq = mem.allocate('float32', d.b * d.h * d.l * d.e);
    const dk = mem.allocate('float32', d.b * d.hkv * d.s * d.e);
    const dv = mem.allocate('float32', d.b * d.hkv * d.s * d.ev);
    for (const s of [dq, dk, dv]) s.handle.fill(0);
    if (d.b * d.h * d.l * d.s === 0) return { dq, dk, dv };
    const ls = d.l * d.s;
    const sp = rt.heap.alloc(4 * ls); // P
    const dp = rt.heap.alloc(4 * ls); // dP, then dS
    const part = rt.heap.alloc(4 * d.s * Math.max(d.e, d.ev, 1)); // one head's dk or dv, summed into the kv head
    const hard = rt.heap.alloc(ls);
    const lens = rt.heap.alloc(4 * d.l);
    const drop = params.dropout ?? null;
    const z = drop ? rt.heap.alloc(4 * ls) : 0;
    const blocks = causalBlocks(d, params);
    try {
      const gAddr = mem.adoptView(grad);
      const oAddr = mem.adoptView(out);
      const lAddr = mem.adoptView(lse);
      for (let bi = 0; bi < d.b; bi++) {
        for (let hi = 0; hi < d.h; hi++) {
          const head = headOf(q, k, v, d, bi, hi);
          scores(q, k, mask, params, d, bi, hi, head, sp, hard, lens);
          // p = exp(s − lse) is the row softmax of the masked scores again: the Wasm kernel, in place
          // (0 at masked keys, NaN on a row of no key)
          exec.run('softmax', [[sp, sp, d.l, d.s, 0, lens]]);
          const g0 = gAddr + 4 * (bi * grad.strides[0] + hi * grad.strides[1]);
          // dP = dO·vᵀ
          causalGemm(
            blocks,
            'cols',
            g0,
            4 * grad.strides[2],
            4 * grad.strides[3],
            head.va,
            4 * v.strides[3],
            4 * v.strides[2],
            dp,
            4 * d.s,
            d.l,
            d.ev,
            d.s,
          );
          if (drop) {
            // dP of the dropped probabilities: Z∘(dO·vᵀ)
            dropFactors(drop, bi * d.h + hi, d.l, d.s, z);
            scaleBy(dp, z, ls);
          }
          // dS = P·(dP − rowsum(dO∘O))·scale, 0 at masked keys (and P NaN there on a row of no key)
          exec.run('attn_ds', [
            [
              sp,
              dp,
              hard,
              g0,
              4 * grad.strides[2],
              4 * grad.strides[3],
              oAddr + 4 * (bi * out.strides[0] + hi * out.strides[1]),
              4 * out.strides[2],
              4 * out.strides[3],
              lAddr + 4 * (bi * lse.strides[0] + hi * lse.strides[1]),
              4 * lse.strides[2],
              d.l,
              d.s,
              d.ev,
              params.scale,
            ],
          ]);
          // dq = dS·k (each query head once: written in place)
          const dqa = mem.address(dq)! + 4 * (bi * d.h + hi) * d.l * d.e;
          causalGemm(
            blocks,
            'inner',
            dp,
            4 * d.s,
            4,
            head.ka,
            4 * k.strides[2],
            4 * k.strides[3],
            dqa,
            4 * d.e,
            d.l,
            d.s,
            d.e,
          );
          // dk += dSᵀ·q and dv += Pᵀ·dO over the query heads of kv head kh
          const kvRow = (bi * d.hkv + head.kh) * d.s;
          const acc = (
            target: number,
            width: number,
            a: number,
            b: number,
            rsb: number,
            csb: number,
            rows: typeof blocks,
          ) => {
            causalGemm(rows, 'lower', a, 4, 4 * d.s, b, rsb, csb, part, 4 * width, d.s, d.l, width);
            exec.run('add_f32', [[target + 4 * kvRow * width, part, d.s * width]]);
          };
          acc(mem.address(dk)!, d.e, dp, head.qa, 4 * q.strides[2], 4 * q.strides[3], blocks);
          if (drop) scaleBy(sp, z, ls); // dv takes the dropped probabilities: (Z∘P)ᵀ·dO
          // a row with no key (a mask on top of causality) has p = NaN at every key, which the
          // reference carries into every key's dv: with a mask, dv takes the whole product
          acc(mem.address(dv)!, d.ev, sp, g0, 4 * grad.strides[2], 4 * grad.strides[3], mask ? null : blocks);
        }
      }
    } finally {
      rt.heap.free(sp);
      rt.heap.free(dp);
      rt.heap.free(part);
      rt.heap.free(hard);
      rt.heap.free(lens);
      if (drop) rt.heap.free(z);
    }
    return { dq, dk, dv };
  };

  return { attention, attentionBackward };
}
