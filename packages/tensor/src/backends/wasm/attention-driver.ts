import type { FunctionBuilder, Local, ModuleBuilder } from './assembler.js';

/**
 * The attention's per-head sequence (attention.ts) as Wasm functions over a range of heads, so
 * one call per thread runs them all: the JavaScript loop it replaces made ≈ 11 kernel calls a
 * head forward and 25 backward (4.6k a step of the demo's char model, ≈ 2–5 µs each), and could
 * not spread heads over threads. Every head runs the same calls in the same order whichever
 * thread takes it, so the bits do not depend on the thread count.
 *
 * The call's constants are a descriptor in the heap (`ATTENTION_FIELDS`: int32 byte addresses and
 * byte strides, then the score scale as f64 and the dropout scale as f32 at `ATTENTION_SCALE_AT`),
 * since a pool call carries at most 28 numbers.
 *
 * - `attn_gemm(mode, rows, a, rsa, csa, b, rsb, csb, c, ldc, m, k, n, pa, pb, tile)`: C = A·B by
 *   row blocks of `rows` over the causal triangle (0: one whole gemm). Mode 0 'cols':
 *   C[a:b, :b] = A[a:b]·B[:, :b]; 1 'inner': C[a:b] = A[a:b, :b]·B[:b]; 2 'lower':
 *   C[a:b] = A[a:b, a:]·B[a:]. The products left out are the masked pairs' exact zeros.
 * - `attn_fwd_items(desc, i0, i1, sp, hard, lens, z, pa, pb, tile)`: query heads i0..i1 of the
 *   B·H (batch-major): scores, mask, float32 softmax (and lse), dropout, P·V.
 * - `attn_bwd_items(desc, i0, i1, sp, dp, hard, lens, part, z, pa, pb, tile)`: kv heads i0..i1 of
 *   the B·Hkv, each with its query heads in order (so dk, dv of a kv head are one thread's sums):
 *   P again (exp(s − lse): `softmax_from_lse`), dP = dO·vᵀ, dS, dq = dS·k, dk (+)= dSᵀ·q, dv (+)= Pᵀ·dO (the first query head
 *   writes, the others add through `part`).
 *
 * @example
 * emitAttentionDriver(m); // after emitGemm, emitSoftmax, emitAttentionRows, emitAttentionDropout
 */
export function emitAttentionDriver(module: ModuleBuilder): void {
  const gemm = emitBlockedGemm(module);
  emitForward(module, gemm);
  emitBackward(module, gemm);
}

/** The descriptor's int32 fields, in order (byte addresses and byte strides). */
export const ATTENTION_FIELDS = [
  'H',
  'hkv',
  'group',
  'q',
  'qB',
  'qH',
  'qrs',
  'qcs',
  'k',
  'kB',
  'kH',
  'krs',
  'kcs',
  'v',
  'vB',
  'vH',
  'vrs',
  'vcs',
  'out',
  'lse',
  'mask',
  'mB',
  'mH',
  'mrs',
  'mcs',
  'kind',
  'l',
  's',
  'e',
  'ev',
  'causal',
  'rows',
  'g',
  'gB',
  'gH',
  'grs',
  'gcs',
  'o',
  'oB',
  'oH',
  'ors',
  'ocs',
  'lin',
  'lB',
  'lH',
  'lss',
  'dq',
  'dk',
  'dv',
  'dvWhole',
  'drop',
  'key0',
  'key1',
  'threshold',
  'zAll',
  'exact',
] as const;
export type AttentionField = (typeof ATTENTION_FIELDS)[number];
/** Byte offset of the f64 score scale; the f32 dropout scale follows it. */
export const ATTENTION_SCALE_AT = 8 * Math.ceil((4 * ATTENTION_FIELDS.length) / 8);
/** Bytes of one descriptor. */
export const ATTENTION_DESC_BYTES = ATTENTION_SCALE_AT + 16;

const fieldAt = (name: AttentionField): number => 4 * ATTENTION_FIELDS.indexOf(name);

function params(f: FunctionBuilder, n: number): Local[] {
  return Array.from({ length: n }, (_, i) => f.param(i));
}

function emitBlockedGemm(module: ModuleBuilder): FunctionBuilder {
  const gemm = module.find('gemm');
  const f = module.function('attn_gemm', Array<'i32'>(16).fill('i32'), []);
  const [mode, rows, a, rsa, csa, b, rsb, csb, c, ldc, m, k, n, pa, pb, tile] = params(f, 16);
  const [a0, a1] = [f.local('i32'), f.local('i32')];
  const call = (
    aAt: () => void,
    bAt: () => void,
    cAt: () => void,
    mm: () => void,
    kk: () => void,
    nn: () => void,
  ) => {
    aAt();
    f.i32(0).get(rsa).get(csa);
    bAt();
    f.i32(0).get(rsb).get(csb);
    cAt();
    f.i32(0).get(ldc).i32(1);
    mm();
    kk();
    nn();
    f.get(pa).get(pb).get(tile).call(gemm, module);
  };
  f.get(rows).op('i32.eqz');
  f.if(() => {
    call(
      () => f.get(a),
      () => f.get(b),
      () => f.get(c),
      () => f.get(m),
      () => f.get(k),
      () => f.get(n),
    );
    f.op('return');
  });
  f.for(a0, 0, m, 0, () => {
    // a1 = min(m, a0 + rows)
    f.get(m).get(a0).get(rows).op('i32.add').tee(a1).get(a1).get(m).op('i32.gt_s', 'select').set(a1);
    const aRow = () => f.get(a).get(a0).get(rsa).op('i32.mul', 'i32.add');
    const cRow = () => f.get(c).get(a0).get(ldc).op('i32.mul', 'i32.add');
    const height = () => f.get(a1).get(a0).op('i32.sub');
    // 'cols' (0) ends the keys at a1, 'inner' (1) the inner sum
    const either = (x: Local, whenMode: number) => () =>
      f.get(a1).get(x).get(mode).i32(whenMode).op('i32.eq', 'select');
    f.get(mode).i32(2).op('i32.lt_u');
    f.if(() => call(aRow, () => f.get(b), cRow, height, either(k, 1), either(n, 0)));
    f.get(mode).i32(2).op('i32.eq');
    f.if(() =>
      call(
        () => aRow().get(a0).get(csa).op('i32.mul', 'i32.add'),
        () => f.get(b).get(a0).get(rsb).op('i32.mul', 'i32.add'),
        cRow,
        height,
        () => f.get(k).get(a0).op('i32.sub'),
        () => f.get(n),
      ),
    );
    f.get(a1).set(a0);
  });
  return f;
}

/** Reads descriptor fields and computes the per-head addresses both directions use. */
class Desc {
  constructor(
    private readonly f: FunctionBuilder,
    private readonly d: Local,
  ) {}
  /** Pushes field `name`. */
  get(name: AttentionField): FunctionBuilder {
    return this.f.get(this.d).mem('i32.load', fieldAt(name));
  }
  /** Pushes the score scale (f64). */
  scale(): FunctionBuilder {
    return this.f.get(this.d).mem('f64.load', ATTENTION_SCALE_AT);
  }
  /** Pushes the dropout scale (f32). */
  dropScale(): FunctionBuilder {
    return this.f.get(this.d).mem('f32.load', ATTENTION_SCALE_AT + 8);
  }
  /** Pushes base + bi·strideB + hi·strideH. */
  at(base: AttentionField, sb: AttentionField, sh: AttentionField, bi: Local, hi: Local): FunctionBuilder {
    this.get(base).get(bi);
    this.get(sb).op('i32.mul', 'i32.add').get(hi);
    return this.get(sh).op('i32.mul', 'i32.add');
  }
}

interface HeadCalls {
  /**
   * sp = the masked row softmax of head (bi, hi)'s scores (its kv head kh), lse to `lseAt` (an
   * address or 0), or
   * with `fromLse` exp(scores − the lse of the descriptor's `lin`).
   */
  probabilities(bi: Local, hi: Local, kh: Local, lseAt: () => void, fromLse?: boolean): void;
  /** zz = the dropout factors of query head `bh` (when the descriptor's drop is set). */
  dropFactors(bh: Local, zz: Local): void;
}

function headCalls(
  module: ModuleBuilder,
  f: FunctionBuilder,
  d: Desc,
  gemm: FunctionBuilder,
  scratch: { sp: Local; hard: Local; lens: Local; z: Local; pa: Local; pb: Local; tile: Local },
): HeadCalls {
  const { sp, hard, lens, z, pa, pb, tile } = scratch;
  return {
    probabilities(bi, hi, kh, lseAt, fromLse = false) {
      // scores = q·kᵀ (the keys past a block's last query are never computed)
      const q = () => d.at('q', 'qB', 'qH', bi, hi);
      timesKvT(module, f, d, gemm, { a: q, rs: 'qrs', cs: 'qcs', kv: 'k', bi, kh, into: sp, pa, pb, tile });
      // scale and mask (attention-rows.ts), then the float32 softmax with lens and lse
      f.get(sp).get(hard).get(lens);
      d.get('l');
      d.get('s');
      d.get('causal');
      d.at('mask', 'mB', 'mH', bi, hi);
      d.get('mrs');
      d.get('mcs');
      d.get('kind');
      d.scale().call(module.find('attn_mask'), module);
      const softmax = (name: string) => () => {
        f.get(sp).get(sp);
        d.get('l');
        d.get('s');
        lseAt();
        f.get(lens).call(module.find(name), module);
      };
      if (fromLse) {
        // the backward: p = exp(s − lse) from the forward's lse (one pass; the softmax makes three)
        f.get(sp);
        d.get('l');
        d.get('s');
        d.at('lin', 'lB', 'lH', bi, hi);
        d.get('lss');
        f.get(lens).call(module.find('softmax_from_lse'), module);
        return;
      }
      // exact: the float64 kernel (the TypeScript kernel's bits; a benchmark's switch)
      d.get('exact');
      f.if(softmax('softmax'), softmax('softmax_f32'));
    },
    dropFactors(bh, zz) {
      // precomputed for every head (zAll ≠ 0: the TypeScript Philox, a benchmark's switch), or
      // this head's rows by the Wasm Philox into z
      d.get('zAll');
      f.if(
        () => {
          d.get('zAll').get(bh);
          d.get('l');
          d.get('s').op('i32.mul', 'i32.mul').i32(2).op('i32.shl', 'i32.add').set(zz);
        },
        () => {
          f.get(z).i32(0);
          d.get('l');
          d.get('s');
          f.get(bh);
          d.get('key0');
          d.get('key1');
          d.get('threshold');
          d.dropScale().call(module.find('attn_dropmask'), module);
          f.get(z).set(zz);
        },
      );
    },
  };
}

/** A kv tensor's descriptor fields: base, batch and head strides, row and column strides. */
const KV_FIELDS = {
  k: ['k', 'kB', 'kH', 'krs', 'kcs'],
  v: ['v', 'vB', 'vH', 'vrs', 'vcs'],
} as const;

/**
 * into = A·kvᵀ, the [l, s] scratch, for A [l, width] at `a` (rows `rs`, columns `cs`) and kv head
 * (bi, kh) of k (width e) or v (width ev), by causal row blocks ('cols': the keys past a block's
 * last query are never computed): the scores q·kᵀ and dP = dO·vᵀ.
 */
function timesKvT(
  module: ModuleBuilder,
  f: FunctionBuilder,
  d: Desc,
  gemm: FunctionBuilder,
  o: {
    a: () => void;
    rs: AttentionField;
    cs: AttentionField;
    kv: 'v' | 'k';
    bi: Local;
    kh: Local;
    into: Local;
    pa: Local;
    pb: Local;
    tile: Local;
  },
): void {
  const [base, sb, sh, rs, cs] = KV_FIELDS[o.kv];
  f.i32(0);
  d.get('rows');
  o.a();
  d.get(o.rs);
  d.get(o.cs);
  d.at(base, sb, sh, o.bi, o.kh);
  d.get(cs);
  d.get(rs);
  f.get(o.into);
  d.get('s').i32(2).op('i32.shl');
  d.get('l');
  d.get(o.kv === 'v' ? 'ev' : 'e');
  d.get('s');
  f.get(o.pa).get(o.pb).get(o.tile).call(gemm, module);
}

/**
 * out[head] = X·kv for the [l, s] scratch X at `rows` and kv head (bi, kh) of v (out, width ev)
 * or k (dq, width e), by causal row blocks ('inner': X is 0 past the diagonal).
 */
function timesKv(
  module: ModuleBuilder,
  f: FunctionBuilder,
  d: Desc,
  gemm: FunctionBuilder,
  o: {
    rows: Local;
    kv: 'v' | 'k';
    bi: Local;
    kh: Local;
    out: 'out' | 'dq';
    head: Local;
    pa: Local;
    pb: Local;
    tile: Local;
  },
): void {
  const [base, sb, sh, rs, cs] = KV_FIELDS[o.kv];
  const width = o.kv === 'v' ? 'ev' : 'e';
  f.i32(1);
  d.get('rows');
  f.get(o.rows);
  d.get('s').i32(2).op('i32.shl').i32(4);
  d.at(base, sb, sh, o.bi, o.kh);
  d.get(rs);
  d.get(cs);
  d.get(o.out).get(o.head);
  d.get('l');
  d.get(width).op('i32.mul', 'i32.mul').i32(2).op('i32.shl', 'i32.add');
  d.get(width).i32(2).op('i32.shl');
  d.get('l');
  d.get('s');
  d.get(width);
  f.get(o.pa).get(o.pb).get(o.tile).call(gemm, module);
}

function emitForward(module: ModuleBuilder, gemm: FunctionBuilder): void {
  const f = module.function('attn_fwd_items', Array<'i32'>(10).fill('i32'), []);
  const [desc, i0, i1, sp, hard, lens, z, pa, pb, tile] = params(f, 10);
  const d = new Desc(f, desc);
  const [idx, bi, hi, kh, zz] = Array.from({ length: 5 }, () => f.local('i32'));
  const head = headCalls(module, f, d, gemm, { sp, hard, lens, z, pa, pb, tile });
  f.for(idx, i0, i1, 1, () => {
    f.get(idx);
    d.get('H').op('i32.div_u').set(bi);
    f.get(idx).get(bi);
    d.get('H').op('i32.mul', 'i32.sub').set(hi);
    f.get(hi);
    d.get('group').op('i32.div_u').set(kh);
    head.probabilities(bi, hi, kh, () => {
      // lse + 4·l·idx, or 0 where not asked
      d.get('lse').get(idx);
      d.get('l').op('i32.mul').i32(2).op('i32.shl', 'i32.add').i32(0);
      d.get('lse').op('select');
    });
    d.get('drop');
    f.if(() => {
      head.dropFactors(idx, zz);
      f.get(sp).get(zz);
      d.get('l');
      d.get('s').op('i32.mul').call(module.find('mul_f32'), module);
    });
    // out = P·V (the probabilities past the diagonal are zero: cut from the inner sum)
    timesKv(module, f, d, gemm, { rows: sp, kv: 'v', bi, kh, out: 'out', head: idx, pa, pb, tile });
  });
}

function emitBackward(module: ModuleBuilder, gemm: FunctionBuilder): void {
  const f = module.function('attn_bwd_items', Array<'i32'>(12).fill('i32'), []);
  const [desc, i0, i1, sp, dp, hard, lens, part, z, pa, pb, tile] = params(f, 12);
  const d = new Desc(f, desc);
  const [idx, bi, kh, gi, hi, qidx, g0, zz, dkT, dvT, tgt] = Array.from({ length: 11 }, () => f.local('i32'));
  const head = headCalls(module, f, d, gemm, { sp, hard, lens, z, pa, pb, tile });
  const add = module.find('add_f32');
  const mul = module.find('mul_f32');
  const ls = () => {
    d.get('l');
    d.get('s').op('i32.mul');
  };
  f.for(idx, i0, i1, 1, () => {
    f.get(idx);
    d.get('hkv').op('i32.div_u').set(bi);
    f.get(idx).get(bi);
    d.get('hkv').op('i32.mul', 'i32.sub').set(kh);
    // this kv head's rows of dk and dv: (bi·hkv + kh)·s rows
    d.get('dk').get(idx);
    d.get('s');
    d.get('e').op('i32.mul', 'i32.mul').i32(2).op('i32.shl', 'i32.add').set(dkT);
    d.get('dv').get(idx);
    d.get('s');
    d.get('ev').op('i32.mul', 'i32.mul').i32(2).op('i32.shl', 'i32.add').set(dvT);
    f.i32(0).set(gi);
    f.block(() => {
      f.loop(() => {
        f.get(gi);
        d.get('group').op('i32.ge_s').brIf(1);
        f.get(kh);
        d.get('group').op('i32.mul').get(gi).op('i32.add').set(hi);
        f.get(bi);
        d.get('H').op('i32.mul').get(hi).op('i32.add').set(qidx);
        head.probabilities(bi, hi, kh, () => f.i32(0), true);
        d.at('g', 'gB', 'gH', bi, hi);
        f.set(g0);
        // dP = dO·vᵀ
        const dO = () => f.get(g0);
        timesKvT(module, f, d, gemm, {
          a: dO,
          rs: 'grs',
          cs: 'gcs',
          kv: 'v',
          bi,
          kh,
          into: dp,
          pa,
          pb,
          tile,
        });
        d.get('drop');
        f.if(() => {
          // dP of the dropped probabilities: Z∘(dO·vᵀ)
          head.dropFactors(qidx, zz);
          f.get(dp).get(zz);
          ls();
          f.call(mul, module);
        });
        // dS = P·(dP − rowsum(dO∘O))·scale (attention-rows.ts)
        f.get(sp).get(dp).get(hard).get(g0);
        d.get('grs');
        d.get('gcs');
        d.at('o', 'oB', 'oH', bi, hi);
        d.get('ors');
        d.get('ocs');
        d.at('lin', 'lB', 'lH', bi, hi);
        d.get('lss');
        d.get('l');
        d.get('s');
        d.get('ev');
        d.scale().call(module.find('attn_ds'), module);
        // dq = dS·k (each query head once)
        timesKv(module, f, d, gemm, { rows: dp, kv: 'k', bi, kh, out: 'dq', head: qidx, pa, pb, tile });
        // dk (+)= dSᵀ·q and dv (+)= (Z∘P)ᵀ·dO over the kv head's rows: the first query head
        // of the group writes, the others add through part
        const sumInto = (
          target: Local,
          width: AttentionField,
          a: Local,
          rows: () => void,
          b: () => void,
          rsb: AttentionField,
          csb: AttentionField,
        ) => {
          f.get(part).get(target).get(gi).op('select').set(tgt);
          f.i32(2);
          rows();
          f.get(a).i32(4);
          d.get('s').i32(2).op('i32.shl');
          b();
          d.get(rsb);
          d.get(csb);
          f.get(tgt);
          d.get(width).i32(2).op('i32.shl');
          d.get('s');
          d.get('l');
          d.get(width);
          f.get(pa).get(pb).get(tile).call(gemm, module);
          f.get(gi);
          f.if(() => {
            f.get(target).get(part);
            d.get('s');
            d.get(width).op('i32.mul').call(add, module);
          });
        };
        sumInto(
          dkT,
          'e',
          dp,
          () => d.get('rows'),
          () => d.at('q', 'qB', 'qH', bi, hi),
          'qrs',
          'qcs',
        );
        d.get('drop');
        f.if(() => {
          f.get(sp).get(zz);
          ls();
          f.call(mul, module);
        });
        // a row with no key (a mask on top of causality) has p = NaN at every key, which the
        // reference carries into every key's dv: the whole product then (no row blocks)
        const dvRows = () => {
          f.i32(0);
          d.get('rows');
          d.get('dvWhole').op('select');
        };
        sumInto(dvT, 'ev', sp, dvRows, () => f.get(g0), 'grs', 'gcs');
        f.get(gi).i32(1).op('i32.add').set(gi).br(0);
      });
    });
  });
}
