import type { FunctionBuilder, Local } from './assembler.js';

/**
 * Philox4x32-10 (philox.ts) emitted as scalar Wasm: each 32×32→64 product is one `i64.mul` of
 * zero-extended words, so its high and low words are exact, and the ten rounds are unrolled with
 * the key bumps folded into constants (round r adds r·W mod 2³² to the key word). The bits equal
 * `philox4x32` of philox.ts (and the WGSL), which the tests check on Random123's vectors and on
 * counters and keys near 2³².
 */

let enabled = true;

/**
 * Turns the Wasm Philox off (false: random leaves go to the TypeScript elementwise kernel and
 * the attention mask to `attentionKeep` per element, the paths it replaced) or back on: for
 * bench/dropout.ts's comparison and for tests of the fallback. Same bits either way.
 *
 * @example
 * useWasmPhilox(false); // time the TypeScript random leaf
 * useWasmPhilox(true);
 */
export function useWasmPhilox(on: boolean): void {
  enabled = on;
}

/** Whether the Wasm kernels generate random draws themselves (`useWasmPhilox`). */
export function wasmPhiloxEnabled(): boolean {
  return enabled;
}

const M0 = 0xd2511f53n;
const M1 = 0xcd9e8d57n;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** The locals one Philox evaluation uses: the four words (in: counter, out: result) and two i64 products. */
export interface PhiloxLocals {
  /** The counter on entry, the four output words after `emitPhilox`. */
  readonly x: readonly [Local, Local, Local, Local];
  readonly p0: Local;
  readonly p1: Local;
}

/**
 * Declares the locals of `emitPhilox` on `f`.
 *
 * @example
 * const ph = philoxLocals(f); // set ph.x[0..3] to the counter, then emitPhilox(f, ph, k0, k1)
 */
export function philoxLocals(f: FunctionBuilder): PhiloxLocals {
  return {
    x: [f.local('i32'), f.local('i32'), f.local('i32'), f.local('i32')],
    p0: f.local('i64'),
    p1: f.local('i64'),
  };
}

/**
 * Replaces the counter in `ph.x` by its Philox4x32-10 words under key (`k0`, `k1`) (i32 locals,
 * left unchanged). Nothing is left on the stack.
 *
 * @example
 * f.get(i).i32(2).op('i32.shr_u').set(ph.x[0]); // counter (i/4, 0, 0, 0)
 * emitPhilox(f, ph, k0, k1); // ph.x[i & 3] is element i's word
 */
export function emitPhilox(f: FunctionBuilder, ph: PhiloxLocals, k0: Local, k1: Local): void {
  const [x0, x1, x2, x3] = ph.x;
  const { p0, p1 } = ph;
  for (let r = 0; r < 10; r++) {
    const key = (k: Local, w: number) => {
      f.get(k);
      const bump = Math.imul(r, w) | 0;
      if (bump !== 0) f.i32(bump).op('i32.add');
    };
    f.get(x0).op('i64.extend_i32_u').i64(M0).op('i64.mul').set(p0);
    f.get(x2).op('i64.extend_i32_u').i64(M1).op('i64.mul').set(p1);
    // x0 = hi(M1·x2) ^ x1 ^ k0, x1 = lo(M1·x2), x2 = hi(M0·x0) ^ x3 ^ k1, x3 = lo(M0·x0)
    f.get(p1).i64(32).op('i64.shr_u', 'i32.wrap_i64').get(x1).op('i32.xor');
    key(k0, W0);
    f.op('i32.xor').set(x0);
    f.get(p1).op('i32.wrap_i64').set(x1);
    f.get(p0).i64(32).op('i64.shr_u', 'i32.wrap_i64').get(x3).op('i32.xor');
    key(k1, W1);
    f.op('i32.xor').set(x2);
    f.get(p0).op('i32.wrap_i64').set(x3);
  }
}

/**
 * Pushes word `w & 3` of `ph.x` (`w` an i32 local): three selects, no branch.
 *
 * @example
 * pushWord(f, ph, lane); // then i32.const 8, i32.shr_u, … as a uniform
 */
export function pushWord(f: FunctionBuilder, ph: PhiloxLocals, w: Local): void {
  const [x0, x1, x2, x3] = ph.x;
  // (w & 2) ? ((w & 1) ? x3 : x2) : ((w & 1) ? x1 : x0)
  f.get(x3).get(x2).get(w).i32(1).op('i32.and', 'select');
  f.get(x1).get(x0).get(w).i32(1).op('i32.and', 'select');
  f.get(w).i32(2).op('i32.and', 'select');
}
