import type { FunctionBuilder, Local, ModuleBuilder } from './assembler.js';

/**
 * The row loops of the Wasm attention (attention.ts) between its gemms, with the arithmetic of
 * the JavaScript loops they replace (float64 products of float32 values, one float32 rounding
 * per stored element), so the results are bit-identical to them:
 *
 * - `attn_mask(sc, hard, lens, l, s, causal, mask, mrs, mcs, kind, scale)`: one head's [l, s]
 *   float32 scores at `sc` become f32(sc·scale) (+ the float mask), or −∞ where the key is
 *   masked (past i when `causal`; a false bool mask); `hard` (l·s bytes) gets 1 there and 0
 *   elsewhere, `lens` (int32 [l]) each row's 1 + its last key kept (0 for none): the row
 *   lengths the softmax kernel may stop at.
 *   The mask of this (batch, head) starts at byte `mask`, rows `mrs` and columns `mcs` bytes
 *   apart (0 where broadcast); `kind` 0 = none, 1 = float32, 2 = bool (bytes).
 * - `attn_ds(p, ds, hard, g, grs, gcs, o, ors, ocs, lse, lss, l, s, ev, scale)`: per row i,
 *   dsum = Σ_c g[i, c]·o[i, c] in float64; then ds = f32(p·(dP − dsum)·scale) over dP at `ds`,
 *   except where `hard`: ds = 0 and p = NaN on a row with lse = −∞ (no key), 0 otherwise.
 * - `add_f32(dst, src, n)`: dst[i] += src[i] (float32).
 *
 * @example
 * emitAttentionRows(m); // then exports.attn_mask(sc, hard, lens, l, s, 1, 0, 0, 0, 0, 0.125)
 */
export function emitAttentionRows(module: ModuleBuilder): void {
  emitMask(module);
  emitDs(module);
  emitAdd(module);
}

function params(f: FunctionBuilder, n: number): Local[] {
  return Array.from({ length: n }, (_, i) => f.param(i));
}

function locals(f: FunctionBuilder, type: 'i32' | 'f64' | 'v128', n: number): Local[] {
  return Array.from({ length: n }, () => f.local(type));
}

/** Pushes base + 4·i. */
function at4(f: FunctionBuilder, base: Local, i: Local): FunctionBuilder {
  return f.get(base).get(i).i32(2).op('i32.shl', 'i32.add');
}

function emitMask(module: ModuleBuilder): FunctionBuilder {
  const f = module.function(
    'attn_mask',
    ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f64'],
    [],
  );
  const [sc, hard, lens, l, s, causal, mask, mrs, mcs, kind, scale] = params(f, 11);
  const [i, j, row, hrow, mrow, end, masked, last, end2] = locals(f, 'i32', 9);
  const [scale2] = locals(f, 'v128', 1);
  f.for(i, 0, l, 1, () => {
    f.get(i).get(s).op('i32.mul').set(hrow);
    f.get(hrow).get(hard).op('i32.add').set(hrow);
    f.get(i).get(s).op('i32.mul').i32(2).op('i32.shl').get(sc).op('i32.add').set(row);
    f.get(i).get(mrs).op('i32.mul').get(mask).op('i32.add').set(mrow);
    // end = causal ? min(s, i + 1) : s
    f.get(s).set(end);
    f.get(causal);
    f.if(() => {
      f.get(i).i32(1).op('i32.add').get(s).op('i32.lt_s');
      f.if(() => {
        f.get(i).i32(1).op('i32.add').set(end);
      });
    });
    f.for(j, end, s, 1, () => {
      at4(f, row, j).f32(Number.NEGATIVE_INFINITY).mem('f32.store');
      f.get(hrow).get(j).op('i32.add').i32(1).mem('i32.store8');
    });
    f.i32(0).set(last);
    // no mask: every key before `end` is kept; f32(sc·scale) two at a time (the same float64
    // product and float32 rounding per lane), the hard bytes zeroed four at a time
    f.get(kind).op('i32.eqz');
    f.if(() => {
      f.get(end).set(last);
      f.get(end).i32(-2).op('i32.and').set(end2);
      f.get(scale).op('f64x2.splat').set(scale2);
      f.for(j, 0, end2, 2, () => {
        at4(f, row, j);
        at4(f, row, j).mem('v128.load64_zero').op('f64x2.promote_low_f32x4').get(scale2);
        f.op('f64x2.mul', 'f32x4.demote_f64x2_zero').store64Lane(0);
      });
      f.for(j, end2, end, 1, () => {
        at4(f, row, j);
        at4(f, row, j).mem('f32.load').op('f64.promote_f32').get(scale).op('f64.mul', 'f32.demote_f64');
        f.mem('f32.store');
      });
      f.get(end).i32(-4).op('i32.and').set(end2);
      f.for(j, 0, end2, 4, () => {
        f.get(hrow).get(j).op('i32.add').i32(0).mem('i32.store');
      });
      f.for(j, end2, end, 1, () => {
        f.get(hrow).get(j).op('i32.add').i32(0).mem('i32.store8');
      });
      f.i32(0).set(end); // the general loop below has nothing left to do
    });
    f.for(j, 0, end, 1, () => {
      // masked = kind == 2 && mask byte == 0
      f.i32(0).set(masked);
      f.get(kind).i32(2).op('i32.eq');
      f.if(() => {
        f.get(mrow).get(j).get(mcs).op('i32.mul', 'i32.add').mem('i32.load8_u').op('i32.eqz').set(masked);
      });
      f.get(hrow).get(j).op('i32.add').get(masked).mem('i32.store8');
      // last = 1 + the last key kept so far
      f.get(last).get(j).i32(1).op('i32.add').get(masked).op('select').set(last);
      f.get(masked);
      f.if(
        () => {
          at4(f, row, j).f32(Number.NEGATIVE_INFINITY).mem('f32.store');
        },
        () => {
          // f32(sc·scale), plus the float mask's value when there is one (no + 0 otherwise: −0 stays)
          const scaled = () => at4(f, row, j).mem('f32.load').op('f64.promote_f32').get(scale).op('f64.mul');
          f.get(kind).i32(1).op('i32.eq');
          f.if(
            () => {
              at4(f, row, j);
              scaled();
              f.get(mrow).get(j).get(mcs).op('i32.mul', 'i32.add').mem('f32.load').op('f64.promote_f32');
              f.op('f64.add', 'f32.demote_f64').mem('f32.store');
            },
            () => {
              at4(f, row, j);
              scaled();
              f.op('f32.demote_f64').mem('f32.store');
            },
          );
        },
      );
    });
    at4(f, lens, i).get(last).mem('i32.store');
  });
  return f;
}

function emitDs(module: ModuleBuilder): FunctionBuilder {
  const f = module.function(
    'attn_ds',
    ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f64'],
    [],
  );
  const [p, ds, hard, g, grs, gcs, o, ors, ocs, lse, lss, l, s, ev, scale] = params(f, 15);
  const [i, j, c, x, gRow, oRow, dead, row, end2] = locals(f, 'i32', 9);
  const [dsum] = locals(f, 'f64', 1);
  const [dsum2] = locals(f, 'v128', 1);
  f.for(i, 0, l, 1, () => {
    f.get(lse).get(i).get(lss).op('i32.mul', 'i32.add').mem('f32.load');
    f.f32(Number.NEGATIVE_INFINITY).op('f32.eq').set(dead);
    f.get(g).get(i).get(grs).op('i32.mul', 'i32.add').set(gRow);
    f.get(o).get(i).get(ors).op('i32.mul', 'i32.add').set(oRow);
    f.f64(0).set(dsum);
    f.for(c, 0, ev, 1, () => {
      f.get(dsum);
      f.get(gRow).get(c).get(gcs).op('i32.mul', 'i32.add').mem('f32.load').op('f64.promote_f32');
      f.get(oRow).get(c).get(ocs).op('i32.mul', 'i32.add').mem('f32.load').op('f64.promote_f32');
      f.op('f64.mul', 'f64.add').set(dsum);
    });
    const one = (at: Local) => {
      f.get(hard).get(at).op('i32.add').mem('i32.load8_u');
      f.if(
        () => {
          at4(f, p, at).f32(Number.NaN).f32(0).get(dead).op('select').mem('f32.store');
          at4(f, ds, at).f32(0).mem('f32.store');
        },
        () => {
          at4(f, ds, at);
          at4(f, p, at).mem('f32.load').op('f64.promote_f32');
          at4(f, ds, at).mem('f32.load').op('f64.promote_f32').get(dsum).op('f64.sub', 'f64.mul');
          f.get(scale).op('f64.mul', 'f32.demote_f64').mem('f32.store');
        },
      );
    };
    // two keys a turn where neither is masked (the same float64 steps as f64x2 lanes), one at a
    // time otherwise: 2.1 → 1.7 ns a key of a causal 128×128 head (its masked half one at a time)
    f.get(dsum).op('f64x2.splat').set(dsum2);
    f.get(s).i32(-2).op('i32.and').set(end2);
    f.get(i).get(s).op('i32.mul').set(row);
    f.for(j, 0, end2, 2, () => {
      f.get(row).get(j).op('i32.add').set(x);
      f.get(hard).get(x).op('i32.add').mem('i32.load16_u').op('i32.eqz');
      f.if(
        () => {
          at4(f, ds, x);
          at4(f, p, x).mem('v128.load64_zero').op('f64x2.promote_low_f32x4');
          at4(f, ds, x)
            .mem('v128.load64_zero')
            .op('f64x2.promote_low_f32x4')
            .get(dsum2)
            .op('f64x2.sub', 'f64x2.mul');
          f.get(scale).op('f64x2.splat', 'f64x2.mul', 'f32x4.demote_f64x2_zero').store64Lane(0);
        },
        () => {
          one(x);
          f.get(x).i32(1).op('i32.add').set(x);
          one(x);
        },
      );
    });
    f.for(j, end2, s, 1, () => {
      f.get(row).get(j).op('i32.add').set(x);
      one(x);
    });
  });
  return f;
}

function emitAdd(module: ModuleBuilder): void {
  const f = module.function('add_f32', ['i32', 'i32', 'i32'], []);
  const [dst, src, n] = params(f, 3);
  const [i, end4] = locals(f, 'i32', 2);
  f.get(n).i32(-4).op('i32.and').set(end4);
  f.for(i, 0, end4, 4, () => {
    at4(f, dst, i);
    at4(f, dst, i).mem('v128.load');
    at4(f, src, i).mem('v128.load').op('f32x4.add').mem('v128.store');
  });
  f.for(i, end4, n, 1, () => {
    at4(f, dst, i);
    at4(f, dst, i).mem('f32.load');
    at4(f, src, i).mem('f32.load').op('f32.add').mem('f32.store');
  });
}
