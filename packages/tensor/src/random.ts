import { activeTrace, hostValue, onReplay, opaqueToTrace } from './engine/capture.js';
import type { RandomKey } from './philox.js';

/**
 * Seedable random numbers. Random tensors (`lr.rand`, `lr.uniform`, `lr.randn`, dropout masks)
 * take a 64-bit key from this generator (two `nextUint32` words, `drawRandomKey`) and the device
 * computes their elements from it with the counter-based Philox4x32-10 (philox.ts): the same seed
 * gives the same keys, hence bit-identical uniform tensors and masks on every backend. Host draws
 * (`randint`, parameter initialisers, sampling) read the stream directly.
 *
 * The generator is xoshiro128** (32-bit state words, period 2^128 − 1) seeded through splitmix32;
 * its whole state is four 32-bit integers, which checkpoints save and restore.
 */
export class Generator {
  private s = new Uint32Array(4);

  constructor(seed = 0) {
    this.manualSeed(seed);
  }

  /** Resets the state from an integer seed. */
  manualSeed(seed: number): this {
    if (!Number.isFinite(seed)) throw new Error(`manualSeed: seed must be a finite number, got ${seed}`);
    let x = (Math.floor(seed) ^ Math.floor(seed / 2 ** 32)) >>> 0;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.s.every((v) => v === 0)) this.s[0] = 1;
    return this;
  }

  /** The state, for checkpoints. */
  getState(): number[] {
    return Array.from(this.s);
  }

  /** Restores a state saved from `getState()` (four unsigned 32-bit integers, not all zero). */
  setState(state: readonly number[]): this {
    if (state.length !== 4 || state.some((v) => !Number.isInteger(v) || v < 0 || v > 0xffffffff)) {
      throw new Error(`Generator.setState: expected 4 unsigned 32-bit integers, got [${state.join(',')}]`);
    }
    if (state.every((v) => v === 0)) throw new Error('Generator.setState: the all-zero state is invalid');
    this.s.set(state);
    return this;
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    // a traced step that draws on the host would replay the same numbers: refused (compile/)
    activeTrace()?.randomDraw();
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform float in [0, 1) with 24 random bits (exactly representable in float32). */
  nextFloat(): number {
    return (this.nextUint32() >>> 8) / 16777216;
  }

  /** Fills `out` with U[low, high). */
  fillUniform(out: Float32Array, low = 0, high = 1): void {
    for (let i = 0; i < out.length; i++) out[i] = low + (high - low) * this.nextFloat();
  }

  /** Fills `out` with N(mean, std²) by the Box–Muller transform (pairs of values). */
  fillNormal(out: Float32Array, mean = 0, std = 1): void {
    for (let i = 0; i < out.length; i += 2) {
      const u1 = 1 - this.nextFloat(); // (0, 1]: log is finite
      const u2 = this.nextFloat();
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = mean + std * r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < out.length) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * u2);
    }
  }

  /** Uniform integer in [low, high). */
  nextInt(low: number, high: number): number {
    const range = high - low;
    if (range <= 0x100000000) {
      // rejection sampling avoids modulo bias
      const limit = 0x100000000 - (0x100000000 % range);
      let v = this.nextUint32();
      while (v >= limit) v = this.nextUint32();
      return low + (v % range);
    }
    return low + Math.floor(this.nextFloat() * range);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

let globalGenerator = new Generator(0);

/**
 * The generator used when an op is given none.
 *
 * @example
 * const state = lr.defaultGenerator().getState(); // save, e.g. in a checkpoint
 * lr.defaultGenerator().setState(state); // and restore
 */
export function defaultGenerator(): Generator {
  return globalGenerator;
}

/**
 * Seeds the default generator (like torch.manual_seed).
 *
 * @example
 * lr.manualSeed(42);
 * const a = await lr.rand([3]).data();
 * lr.manualSeed(42);
 * const b = await lr.rand([3]).data(); // the same values as a
 */
export function manualSeed(seed: number): Generator {
  globalGenerator = new Generator(seed);
  return globalGenerator;
}

/**
 * Draws the key of one device random tensor from `gen` (two `nextUint32` words) and returns it as
 * the object kernels read. In a function traced by `lr.compile`, each replay draws the key again
 * at this point of the step (`lr.onReplay`) and the kernels that read the returned object get the
 * new one (`lr.hostValue`): a replayed step consumes the generator as the eager step does, and the
 * forward and backward kernels of one draw (a dropout mask recomputed in the gradient) see the
 * same key.
 *
 * @example
 * const key = lr.drawRandomKey(new lr.Generator(0)); // { key0, key1 }
 */
export function drawRandomKey(gen: Generator): RandomKey {
  const cell = { key0: 0, key1: 0 };
  const draw = () => {
    cell.key0 = gen.nextUint32();
    cell.key1 = gen.nextUint32();
  };
  // hidden from the trace: a direct host draw there is refused (a replay would repeat it)
  opaqueToTrace(draw);
  onReplay(draw);
  // a copy per call: a replay rebuilds the kernels' arguments from it
  return hostValue(() => ({ key0: cell.key0, key1: cell.key1 }));
}
