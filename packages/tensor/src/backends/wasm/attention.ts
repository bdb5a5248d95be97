import type { AttentionParams, KernelTable } from '../../backend.js';
import type { View } from '../../storage.js';
import type { Executor } from './matmul.js';
import type { WasmRuntime } from './runtime.js';

/**
 * `attention` and `attentionBackward` on the Wasm gemm, one (batch, head) at a time: the [L, S]
 * scores of that head are a gemm into heap scratch (L·S floats, freed after the call), the row
 * masking is a JavaScript loop over it, the row softmax (with lse) the Wasm softmax kernel, and
 * P·V, dS·K, dSᵀ·Q, Pᵀ·dO are gemms again.
 * So only one head's score matrix exists at a time (the TypeScript reference keeps one row).
 * Semantics follow backends/cpu/attention.ts: masked keys (causal, bool false) are −∞, a fully
 * masked row gives NaN and lse −∞, float masks add. Differences: probabilities are rounded to
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
    hard: Uint8Array,
  ) => {
    gemm(
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
    const sc = new Float32Array(rt.heap.memory.buffer, sp, d.l * d.s);
    const ma = mask ? (mask.storage.handle as Float32Array | Uint8Array) : null;
    const bool = mask?.storage.dtype === 'bool';
    const scale = p.scale;
    hard.fill(0);
    for (let i = 0; i < d.l; i++) {
      const row = i * d.s;
      // causal: keys past i are masked; the rest of the row only scales (and adds a float mask)
      const end = p.causal ? Math.min(d.s, i + 1) : d.s;
      for (let j = end; j < d.s; j++) {
        sc[row + j] = Number.NEGATIVE_INFINITY;
        hard[row + j] = 1;
      }
      if (!mask || !ma) {
        for (let j = 0; j < end; j++) sc[row + j] *= scale;
        continue;
      }
      const mo = mask.offset + bi * mask.strides[0] + hi * mask.strides[1] + i * mask.strides[2];
      const ms = mask.strides[3];
      for (let j = 0; j < end; j++) {
        const m = ma[mo + j * ms];
        if (bool && !m) {
          sc[row + j] = Number.NEGATIVE_INFINITY;
          hard[row + j] = 1;
        } else sc[row + j] = bool ? sc[row + j] * scale : sc[row + j] * scale + m;
      }
    }
    return sc;
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

  const attention: KernelTable['attention'] = (q, k, v, mask, params) => {
    const d = dims(q, k, v);
    if (zero(d)) return fallback.attention(q, k, v, mask, params);
    const rows = d.b * d.h * d.l;
    const out = mem.allocate('float32', rows * d.ev);
    const lse = params.lse ? mem.allocate('float32', rows) : null;
    const sp = rt.heap.alloc(4 * Math.max(1, d.l * d.s));
    const hard = new Uint8Array(d.l * d.s);
    try {
      for (let bi = 0; bi < d.b; bi++) {
        for (let hi = 0; hi < d.h; hi++) {
          const head = headOf(q, k, v, d, bi, hi);
          scores(q, k, mask, params, d, bi, hi, head, sp, hard);
          const row0 = (bi * d.h + hi) * d.l;
          // P = softmax of the masked rows in place, lse beside (the Wasm softmax kernel)
          const lseAt = lse ? mem.address(lse)! + 4 * row0 : 0;
          exec.run('softmax', [[sp, sp, d.l, d.s, lseAt]]);
          const oa = mem.address(out)! + 4 * row0 * d.ev;
          gemm(sp, 4 * d.s, 4, head.va, 4 * v.strides[2], 4 * v.strides[3], oa, 4 * d.ev, d.l, d.s, d.ev);
        }
      }
    } finally {
      rt.heap.free(sp);
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
    const hard = new Uint8Array(ls);
    const la = lse.storage.handle as Float32Array;
    const ga = grad.storage.handle as Float32Array;
    const oa = out.storage.handle as Float32Array;
    const at = (x: View, bi: number, hi: number, r: number, c: number): number =>
      x.offset + bi * x.strides[0] + hi * x.strides[1] + r * x.strides[2] + c * x.strides[3];
    try {
      const gAddr = mem.adoptView(grad);
      for (let bi = 0; bi < d.b; bi++) {
        for (let hi = 0; hi < d.h; hi++) {
          const head = headOf(q, k, v, d, bi, hi);
          scores(q, k, mask, params, d, bi, hi, head, sp, hard);
          // p = exp(s − lse) is the row softmax of the masked scores again: the Wasm kernel, in place
          // (0 at masked keys, NaN on a row of no key)
          exec.run('softmax', [[sp, sp, d.l, d.s, 0]]);
          const g0 = gAddr + 4 * (bi * grad.strides[0] + hi * grad.strides[1]);
          // dP = dO·vᵀ
          gemm(
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
          const ds = new Float32Array(rt.heap.memory.buffer, dp, ls);
          const pv = new Float32Array(rt.heap.memory.buffer, sp, ls);
          for (let i = 0; i < d.l; i++) {
            const m = la[lse.offset + bi * lse.strides[0] + hi * lse.strides[1] + i * lse.strides[2]];
            let dsum = 0;
            const go = at(grad, bi, hi, i, 0);
            const oo = at(out, bi, hi, i, 0);
            const [gs, os] = [grad.strides[3], out.strides[3]];
            for (let c = 0; c < d.ev; c++) dsum += ga[go + c * gs] * oa[oo + c * os];
            const dead = m === Number.NEGATIVE_INFINITY;
            for (let j = 0; j < d.s; j++) {
              const x = i * d.s + j;
              if (hard[x]) {
                pv[x] = dead ? Number.NaN : 0;
                ds[x] = 0;
              } else ds[x] = pv[x] * (ds[x] - dsum) * params.scale;
            }
          }
          // dq = dS·k (each query head once: written in place)
          const dqa = mem.address(dq)! + 4 * (bi * d.h + hi) * d.l * d.e;
          gemm(dp, 4 * d.s, 4, head.ka, 4 * k.strides[2], 4 * k.strides[3], dqa, 4 * d.e, d.l, d.s, d.e);
          // dk += dSᵀ·q and dv += Pᵀ·dO over the query heads of kv head kh
          const kvRow = (bi * d.hkv + head.kh) * d.s;
          const acc = (
            target: Float32Array,
            width: number,
            a: number,
            b: number,
            rsb: number,
            csb: number,
          ) => {
            gemm(a, 4, 4 * d.s, b, rsb, csb, part, 4 * width, d.s, d.l, width);
            const src = new Float32Array(rt.heap.memory.buffer, part, d.s * width);
            const base = kvRow * width;
            for (let x = 0; x < d.s * width; x++) target[base + x] += src[x];
          };
          acc(dk.handle as Float32Array, d.e, dp, head.qa, 4 * q.strides[2], 4 * q.strides[3]);
          acc(dv.handle as Float32Array, d.ev, sp, g0, 4 * grad.strides[2], 4 * grad.strides[3]);
        }
      }
    } finally {
      rt.heap.free(sp);
      rt.heap.free(dp);
      rt.heap.free(part);
    }
    return { dq, dk, dv };
  };

  return { attention, attentionBackward };
}
