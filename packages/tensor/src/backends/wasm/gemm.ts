import { type FunctionBuilder, type Local, type ModuleBuilder, madd } from './assembler.js';

/**
 * Blocking of the Wasm gemm (GotoBLAS-style). C is computed in NC-wide column blocks; for each
 * KC-deep slice of K a KC×NC panel of B is packed into NR-wide strips, then MC-row blocks of A
 * into MR-row strips, and an MR×NR micro-kernel keeps its MR·NR/4 f32x4 accumulators in locals
 * (registers) across the whole slice.
 */
export interface GemmConfig {
  /** Rows of C per micro-tile. */
  mr: number;
  /** Columns of C per micro-tile (a multiple of 4: one f32x4 per 4 columns). */
  nr: number;
  /** Depth of a K slice (K is cut into equal slices of at most KC). */
  kc: number;
  /** Rows of A per packed block. */
  mc: number;
  /** Columns of B per packed panel. */
  nc: number;
  /** Use relaxed-SIMD FMA (`f32x4.relaxed_madd`) instead of a mul and an add. */
  fused: boolean;
}

/**
 * Default blocking. Measured on the 2-core Xeon (Sapphire Rapids class, Node 20), one thread,
 * best of 3 s: without FMA (mul + add), 4×8 tiles reach 32 GFLOP/s at 512³, 6×8 29, 4×12 30,
 * 8×8 23 (it spills: x64 has 16 SIMD registers); with relaxed-SIMD FMA (Node 20 only behind
 * --experimental-wasm-relaxed-simd), 6×8 reaches 40 and 4×8 38. KC = 256 keeps an A strip and
 * a B strip (6 + 8 KiB) in the 48 KiB L1; NC = 1024 keeps the B panel (1 MiB) in the 2 MiB L2.
 *
 * @example
 * defaultGemm(features().relaxedSimd); // { mr: 4, nr: 8, kc: 256, mc: 96, nc: 1024 } in Node 20
 */
export function defaultGemm(fused: boolean): Omit<GemmConfig, 'fused'> {
  return { mr: fused ? 6 : 4, nr: 8, kc: 256, mc: 96, nc: 1024 };
}

/** Bytes of the per-thread scratch a gemm call needs: packed A block, packed B panel, edge tile. */
export function gemmScratchBytes(c: GemmConfig): { a: number; b: number; tile: number } {
  const up = (x: number, to: number) => Math.ceil(x / to) * to;
  return { a: up(c.mc, c.mr) * c.kc * 4, b: c.kc * up(c.nc, c.nr) * 4, tile: c.mr * c.nr * 4 };
}

/** `out = min(x, y)` over i32 locals/constants (signed). */
function min(f: FunctionBuilder, out: Local, x: Local | number, y: Local | number): void {
  f.push(x).push(y).push(x).push(y).op('i32.lt_s', 'select').set(out);
}

/**
 * Adds `gemm` (and its helpers `packA`, `packB`, `macro`) to a module. All addresses and
 * strides are in bytes; C is row-major with row stride `ldc` bytes.
 *
 * `gemm(a, bsa, rsa, csa, b, bsb, rsb, csb, c, bsc, ldc, batch, m, k, n, packA, packB, tile)`
 * computes, for each of `batch` matrices, C[M,N] = A[M,K]·B[K,N], where batch i starts at
 * `a + i·bsa` (and likewise B, C). A thread given a range of rows or columns of C calls it on
 * that sub-matrix; every element is computed by the same operations in the same order whichever
 * part a thread gets, because K is sliced by K alone.
 *
 * @example
 * const m = new ModuleBuilder({ initial: 1, maximum: 65536, shared: true });
 * emitGemm(m, { ...defaultGemm(false), fused: false });
 */
export function emitGemm(module: ModuleBuilder, cfg: GemmConfig): void {
  const { mr, nr, fused } = cfg;
  if (nr % 4 !== 0) throw new Error(`gemm: nr must be a multiple of 4, got ${nr}`);
  const packA = emitPackA(module, mr);
  const packB = emitPackB(module, nr);
  const macro = emitMacro(module, mr, nr, fused);

  const f = module.function('gemm', Array<'i32'>(18).fill('i32'), []);
  const [a, bsa, rsa, csa, b, bsb, rsb, csb, c, bsc, ldc, batch, m, k, n, pa, pb, tile] = Array.from(
    { length: 18 },
    (_, i) => f.param(i),
  );
  const [bi, j0, p0, i0, ncCur, kcCur, mcCur, kcStep, slices, aB, bB, cB] = Array.from({ length: 12 }, () =>
    f.local('i32'),
  );
  f.get(k)
    .op('i32.eqz')
    .if(() => f.op('return')); // C is left as it is: the caller zero-fills
  // K in equal slices of at most KC: k = 257 gives two of 129 and 128, not 256 and 1
  f.get(k)
    .i32(cfg.kc - 1)
    .op('i32.add')
    .i32(cfg.kc)
    .op('i32.div_u')
    .set(slices);
  f.get(k).get(slices).op('i32.add').i32(1).op('i32.sub').get(slices).op('i32.div_u').set(kcStep);
  f.for(bi, 0, batch, 1, () => {
    f.get(a).get(bi).get(bsa).op('i32.mul', 'i32.add').set(aB);
    f.get(b).get(bi).get(bsb).op('i32.mul', 'i32.add').set(bB);
    f.get(c).get(bi).get(bsc).op('i32.mul', 'i32.add').set(cB);
    f.for(j0, 0, n, cfg.nc, () => {
      f.get(n).get(j0).op('i32.sub').set(ncCur);
      min(f, ncCur, ncCur, cfg.nc);
      f.for(p0, 0, k, 0, () => {
        f.get(k).get(p0).op('i32.sub').set(kcCur);
        min(f, kcCur, kcCur, kcStep);
        // packB(b + p0·rsb + j0·csb, rsb, csb, kc, nc, pb)
        f.get(bB).get(p0).get(rsb).op('i32.mul', 'i32.add').get(j0).get(csb).op('i32.mul', 'i32.add');
        f.get(rsb).get(csb).get(kcCur).get(ncCur).get(pb).call(packB, module);
        f.for(i0, 0, m, cfg.mc, () => {
          f.get(m).get(i0).op('i32.sub').set(mcCur);
          min(f, mcCur, mcCur, cfg.mc);
          f.get(aB).get(i0).get(rsa).op('i32.mul', 'i32.add').get(p0).get(csa).op('i32.mul', 'i32.add');
          f.get(rsa).get(csa).get(mcCur).get(kcCur).get(pa).call(packA, module);
          // macro(pa, pb, c + i0·ldc + 4·j0, ldc, mc, nc, kc, accumulate = p0 > 0, tile)
          f.get(pa).get(pb);
          f.get(cB).get(i0).get(ldc).op('i32.mul', 'i32.add').get(j0).i32(2).op('i32.shl', 'i32.add');
          f.get(ldc).get(mcCur).get(ncCur).get(kcCur).get(p0).i32(0).op('i32.gt_s').get(tile);
          f.call(macro, module);
        });
        // the slice loop steps by the slice just done (the last one may be shorter)
        f.get(p0).get(kcCur).op('i32.add').set(p0);
      });
    });
  });
}

/**
 * packA(src, rs, cs, rows, depth, dst): rows × depth of A into MR-row strips, k-major (strip s
 * holds, for each p, A[s·MR + 0..MR−1, p]), zero past the last row.
 */
function emitPackA(module: ModuleBuilder, mr: number): FunctionBuilder {
  const f = module.function('packA', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const [src, rs, cs, rows, depth, dst] = Array.from({ length: 6 }, (_, i) => f.param(i));
  const [r0, q, p, s, d, end4, rowA, pairs] = Array.from({ length: 8 }, () => f.local('i32'));
  const [va, vb] = [f.local('v128'), f.local('v128')];
  const step = mr * 4;
  /** The strip's rows q0.. one at a time (an edge strip, a stride the vector paths do not take). */
  const scalarRows = (q0: Local) => {
    f.for(q, q0, mr, 1, () => {
      f.get(dst).get(q).i32(2).op('i32.shl', 'i32.add').set(d);
      f.get(r0).get(q).op('i32.add').get(rows).op('i32.lt_s');
      f.if(
        () => {
          f.get(src).get(r0).get(q).op('i32.add').get(rs).op('i32.mul', 'i32.add').set(s);
          f.for(p, 0, depth, 1, () => {
            f.get(d).get(s).mem('f32.load').mem('f32.store');
            f.get(s).get(cs).op('i32.add').set(s);
            f.get(d).i32(step).op('i32.add').set(d);
          });
        },
        () => {
          f.for(p, 0, depth, 1, () => {
            f.get(d).f32(0).mem('f32.store');
            f.get(d).i32(step).op('i32.add').set(d);
          });
        },
      );
    });
  };
  // A row-major (cs = 4 bytes) with mr even: rows two at a time, four k a turn, interleaved by
  // two shuffles into the (row q, row q+1) pairs of four consecutive k; A column-major (rs = 4):
  // the strip's mr values of one k are consecutive, one v128 (and a half for mr = 6) a k.
  // Both copy the same floats as the scalar loop: 11% → ≈ 3% of the demo's char step.
  const rowMajor = mr % 2 === 0;
  f.get(depth).i32(-4).op('i32.and').set(end4);
  f.for(r0, 0, rows, mr, () => {
    // a whole strip of a column-major A
    f.get(r0).i32(mr).op('i32.add').get(rows).op('i32.le_s').get(rs).i32(4).op('i32.eq', 'i32.and');
    f.if(
      () => {
        f.get(src).get(r0).i32(2).op('i32.shl', 'i32.add').set(s);
        f.get(dst).set(d);
        f.for(p, 0, depth, 1, () => {
          f.get(d).get(s).mem('v128.load').mem('v128.store');
          for (let o = 16; o + 8 <= step; o += 8)
            f.get(d).get(s).mem('v128.load64_zero', o).store64Lane(0, o);
          if (step % 8 !== 0)
            f.get(d)
              .get(s)
              .mem('f32.load', step - 4)
              .mem('f32.store', step - 4);
          f.get(s).get(cs).op('i32.add').set(s);
          f.get(d).i32(step).op('i32.add').set(d);
        });
      },
      () => {
        // a row-major A: the strip's pairs of rows that exist (an edge strip's last odd row and
        // its zero rows one at a time)
        f.i32(0).set(pairs);
        f.get(cs)
          .i32(4)
          .op('i32.eq')
          .i32(rowMajor ? 1 : 0)
          .op('i32.and');
        f.if(() => {
          f.get(rows).get(r0).op('i32.sub').set(pairs);
          f.i32(mr).get(pairs).get(pairs).i32(mr).op('i32.gt_s', 'select').i32(-2).op('i32.and').set(pairs);
        });
        f.for(q, 0, pairs, 2, () => {
          f.get(src).get(r0).get(q).op('i32.add').get(rs).op('i32.mul', 'i32.add').set(rowA);
          f.get(dst).get(q).i32(2).op('i32.shl', 'i32.add').set(d);
          f.for(p, 0, end4, 4, () => {
            f.get(rowA).get(p).i32(2).op('i32.shl', 'i32.add').set(s);
            f.get(s).mem('v128.load').set(va);
            f.get(s).get(rs).op('i32.add').mem('v128.load').set(vb);
            const pair = (lanes: number[], lane: number, k: number) => {
              f.get(d);
              f.get(va).get(vb).shuffle(lanes);
              f.store64Lane(lane, k * step);
            };
            const lo = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
            const hi = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
            pair(lo, 0, 0);
            pair(lo, 1, 1);
            pair(hi, 0, 2);
            pair(hi, 1, 3);
            f.get(d)
              .i32(4 * step)
              .op('i32.add')
              .set(d);
          });
          f.for(p, end4, depth, 1, () => {
            f.get(rowA).get(p).i32(2).op('i32.shl', 'i32.add').set(s);
            f.get(d).get(s).mem('f32.load').mem('f32.store');
            f.get(d).get(s).get(rs).op('i32.add').mem('f32.load').mem('f32.store', 4);
            f.get(d).i32(step).op('i32.add').set(d);
          });
        });
        scalarRows(pairs);
      },
    );
    f.get(dst).get(depth).i32(step).op('i32.mul', 'i32.add').set(dst);
  });
  return f;
}

/**
 * packB(src, rs, cs, depth, cols, dst): depth × cols of B into NR-column strips, k-major (strip
 * s holds, for each p, B[p, s·NR + 0..NR−1]), zero past the last column. A row-major B (cs = 4)
 * with a whole strip inside it is copied four floats at a time.
 */
function emitPackB(module: ModuleBuilder, nr: number): FunctionBuilder {
  const f = module.function('packB', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const [src, rs, cs, depth, cols, dst] = Array.from({ length: 6 }, (_, i) => f.param(i));
  const [j0, q, p, s, d] = Array.from({ length: 5 }, () => f.local('i32'));
  f.for(j0, 0, cols, nr, () => {
    f.get(cs).i32(4).op('i32.eq').get(j0).i32(nr).op('i32.add').get(cols).op('i32.le_s', 'i32.and');
    f.if(
      () => {
        f.get(src).get(j0).i32(2).op('i32.shl', 'i32.add').set(s);
        f.get(dst).set(d);
        f.for(p, 0, depth, 1, () => {
          for (let v = 0; v < nr / 4; v++)
            f.get(d)
              .get(s)
              .mem('v128.load', 16 * v)
              .mem('v128.store', 16 * v);
          f.get(s).get(rs).op('i32.add').set(s);
          f.get(d)
            .i32(nr * 4)
            .op('i32.add')
            .set(d);
        });
      },
      () => {
        f.for(q, 0, nr, 1, () => {
          f.get(dst).get(q).i32(2).op('i32.shl', 'i32.add').set(d);
          f.get(j0).get(q).op('i32.add').get(cols).op('i32.lt_s');
          f.if(
            () => {
              f.get(src).get(j0).get(q).op('i32.add').get(cs).op('i32.mul', 'i32.add').set(s);
              f.for(p, 0, depth, 1, () => {
                f.get(d).get(s).mem('f32.load').mem('f32.store');
                f.get(s).get(rs).op('i32.add').set(s);
                f.get(d)
                  .i32(nr * 4)
                  .op('i32.add')
                  .set(d);
              });
            },
            () => {
              f.for(p, 0, depth, 1, () => {
                f.get(d).f32(0).mem('f32.store');
                f.get(d)
                  .i32(nr * 4)
                  .op('i32.add')
                  .set(d);
              });
            },
          );
        });
      },
    );
    f.get(dst)
      .get(depth)
      .i32(nr * 4)
      .op('i32.mul', 'i32.add')
      .set(dst);
  });
  return f;
}

/**
 * macro(pa, pb, c, ldc, mc, nc, kc, accumulate, tile): C[mc, nc] (=|+=) packed A block · packed
 * B panel, one MR×NR micro-tile at a time; edge tiles go through `tile` and only their part
 * inside C is written.
 */
function emitMacro(module: ModuleBuilder, mr: number, nr: number, fused: boolean): FunctionBuilder {
  const f = module.function('macro', Array<'i32'>(9).fill('i32'), []);
  const [pa, pb, c, ldc, mc, nc, kc, accumulate, tile] = Array.from({ length: 9 }, (_, i) => f.param(i));
  const [jr, ir, ap, bp, apEnd, dst, h, w, x, y] = Array.from({ length: 10 }, () => f.local('i32'));
  const nv = nr / 4;
  const acc: Local[][] = Array.from({ length: mr }, () => Array.from({ length: nv }, () => f.local('v128')));
  const bv: Local[] = Array.from({ length: nv }, () => f.local('v128'));
  const av = f.local('v128');
  f.for(jr, 0, nc, nr, () => {
    f.for(ir, 0, mc, mr, () => {
      f.get(pa).get(ir).get(kc).op('i32.mul').i32(2).op('i32.shl', 'i32.add').set(ap);
      f.get(pb).get(jr).get(kc).op('i32.mul').i32(2).op('i32.shl', 'i32.add').set(bp);
      f.get(ap)
        .get(kc)
        .i32(mr * 4)
        .op('i32.mul', 'i32.add')
        .set(apEnd);
      for (const row of acc) for (const v of row) f.f32(0).op('f32x4.splat').set(v);
      // the micro-kernel: per step of k, NR/4 vector loads of B, MR broadcasts of A, MR·NR/4 madds
      f.loop(() => {
        for (let j = 0; j < nv; j++)
          f.get(bp)
            .mem('v128.load', 16 * j)
            .set(bv[j]);
        for (let i = 0; i < mr; i++) {
          f.get(ap)
            .mem('v128.load32_splat', 4 * i)
            .set(av);
          for (let j = 0; j < nv; j++) {
            madd(
              f,
              fused,
              () => f.get(av),
              () => f.get(bv[j]),
              () => f.get(acc[i][j]),
            );
            f.set(acc[i][j]);
          }
        }
        f.get(ap)
          .i32(mr * 4)
          .op('i32.add')
          .set(ap);
        f.get(bp)
          .i32(nr * 4)
          .op('i32.add')
          .set(bp);
        f.get(ap).get(apEnd).op('i32.lt_u').brIf(0);
      });
      f.get(mc).get(ir).op('i32.sub').set(h);
      f.get(nc).get(jr).op('i32.sub').set(w);
      f.get(h).i32(mr).op('i32.ge_s').get(w).i32(nr).op('i32.ge_s', 'i32.and');
      f.if(
        () => {
          // a whole tile: straight to C (stored on the first K slice, added on the others)
          f.get(c).get(ir).get(ldc).op('i32.mul', 'i32.add').get(jr).i32(2).op('i32.shl', 'i32.add').set(dst);
          const store = (add: boolean) => {
            for (let i = 0; i < mr; i++) {
              for (let j = 0; j < nv; j++) {
                f.get(dst).get(acc[i][j]);
                if (add)
                  f.get(dst)
                    .mem('v128.load', 16 * j)
                    .op('f32x4.add');
                f.mem('v128.store', 16 * j);
              }
              if (i < mr - 1) f.get(dst).get(ldc).op('i32.add').set(dst);
            }
          };
          f.get(accumulate).if(
            () => store(true),
            () => store(false),
          );
        },
        () => {
          // an edge tile: through the scratch tile, then the part inside C
          for (let i = 0; i < mr; i++) {
            for (let j = 0; j < nv; j++)
              f.get(tile)
                .get(acc[i][j])
                .mem('v128.store', (i * nr + 4 * j) * 4);
          }
          min(f, h, h, mr);
          min(f, w, w, nr);
          f.for(x, 0, h, 1, () => {
            f.get(c).get(ir).get(x).op('i32.add').get(ldc).op('i32.mul', 'i32.add').get(jr).i32(2);
            f.op('i32.shl', 'i32.add').set(dst);
            const copy = (add: boolean) => {
              f.for(y, 0, w, 1, () => {
                f.get(dst).get(y).i32(2).op('i32.shl', 'i32.add');
                f.get(tile).get(x).i32(nr).op('i32.mul').get(y).op('i32.add').i32(2).op('i32.shl', 'i32.add');
                f.mem('f32.load');
                if (add) f.get(dst).get(y).i32(2).op('i32.shl', 'i32.add').mem('f32.load').op('f32.add');
                f.mem('f32.store');
              });
            };
            f.get(accumulate).if(
              () => copy(true),
              () => copy(false),
            );
          });
        },
      );
    });
  });
  return f;
}
