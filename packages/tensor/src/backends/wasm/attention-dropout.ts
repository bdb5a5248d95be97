import { ATTENTION_STREAM } from '../../philox.js';
import type { ModuleBuilder } from './assembler.js';
import { emitPhilox, philoxLocals } from './philox.js';

/**
 * The attention-dropout factors in Wasm (the mask of philox.ts `attentionKeep`, bit for bit):
 *
 * - `attn_dropmask(z, i0, i1, s, bh, key0, key1, threshold, scale)`: rows i0..i1 of one head's
 *   [L, S] factors at `z` (float32, row-major from row 0): z[i, j] = scale where the top 24 bits
 *   of word j mod 4 of Philox(⌊j/4⌋, i, bh, ATTENTION_STREAM) are ≥ threshold, else 0. One
 *   Philox per four keys; threads take whole rows, so the split changes no bit.
 * - `mul_f32(dst, src, n)`: dst[i] *= src[i] (float32: the product of two float32 rounded once,
 *   what `x[i] *= z[i]` on Float32Arrays gives).
 *
 * One thread fills a 256×256 head at ≈ 6 ns a probability (the scalar Philox's ten dependent
 * multiplies per four); the TypeScript loop it replaced (`attentionKeep` per element) took
 * ≈ 75 ns (2-core VM, load 3.6; docs/perf.md, issue 16, dropout).
 *
 * @example
 * emitAttentionDropout(m); // exports.attn_dropmask(z, 0, l, s, bh, k0, k1, dropThreshold(p), 1 / (1 - p))
 */
export function emitAttentionDropout(module: ModuleBuilder): void {
  emitDropMask(module);
  emitMul(module);
}

function emitDropMask(module: ModuleBuilder): void {
  const f = module.function(
    'attn_dropmask',
    ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32'],
    [],
  );
  const [z, i0, i1, s, bh, k0, k1, threshold, scale] = Array.from({ length: 9 }, (_, i) => f.param(i));
  const [i, j, row] = [f.local('i32'), f.local('i32'), f.local('i32')];
  const ph = philoxLocals(f);
  f.for(i, i0, i1, 1, () => {
    f.get(i).get(s).op('i32.mul').i32(2).op('i32.shl').get(z).op('i32.add').set(row);
    f.for(j, 0, s, 4, () => {
      f.get(j).i32(2).op('i32.shr_u').set(ph.x[0]);
      f.get(i).set(ph.x[1]);
      f.get(bh).set(ph.x[2]);
      f.i32(ATTENTION_STREAM).set(ph.x[3]);
      emitPhilox(f, ph, k0, k1);
      for (let w = 0; w < 4; w++) {
        const store = () => {
          f.get(row).get(j).i32(2).op('i32.shl', 'i32.add');
          f.get(scale).f32(0);
          f.get(ph.x[w]).i32(8).op('i32.shr_u').get(threshold).op('i32.ge_u', 'select');
          f.mem('f32.store', 4 * w);
        };
        if (w === 0) store();
        else {
          // the last group of a row may be partial
          f.get(j).i32(w).op('i32.add').get(s).op('i32.lt_s');
          f.if(store);
        }
      }
    });
  });
}

function emitMul(module: ModuleBuilder): void {
  const f = module.function('mul_f32', ['i32', 'i32', 'i32'], []);
  const [dst, src, n] = [f.param(0), f.param(1), f.param(2)];
  const [i, end4, a, b] = [f.local('i32'), f.local('i32'), f.local('i32'), f.local('i32')];
  f.get(n).i32(-4).op('i32.and').set(end4);
  const addresses = () => {
    f.get(dst).get(i).i32(2).op('i32.shl', 'i32.add').set(a);
    f.get(src).get(i).i32(2).op('i32.shl', 'i32.add').set(b);
  };
  f.for(i, 0, end4, 4, () => {
    addresses();
    f.get(a).get(a).mem('v128.load').get(b).mem('v128.load').op('f32x4.mul').mem('v128.store');
  });
  f.for(i, end4, n, 1, () => {
    addresses();
    f.get(a).get(a).mem('f32.load').get(b).mem('f32.load').op('f32.mul').mem('f32.store');
  });
}
