import { describe, expect, it } from 'vitest';
import { WasmElementwise } from '../../src/backends/wasm/elementwise.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import type { Expr } from '../../src/expr/program.js';
import { erf, type ScalarOpName } from '../../src/expr/table.js';
import { contiguousStrides } from '../../src/shape.js';
import '../../src/index.js';

/**
 * The Wasm elementwise compiler's transcendental and rounding ops (backends/wasm/math.ts)
 * against float64 references built on Math.*: each result rounded to float32 must equal the
 * reference rounded to float32, within 1 ulp where the exact value lies by a rounding boundary.
 */
const rt = new WasmRuntime();
const ew = new WasmElementwise(rt);

const SQ = Math.sqrt(2 / Math.PI);
const reference: Partial<Record<ScalarOpName, (x: number) => number>> = {
  exp: Math.exp,
  log: Math.log,
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  silu: (x) => x / (1 + Math.exp(-x)),
  // the table's 0.5·x·(1 + tanh u), without its cancellation for u ≪ 0
  geluTanh: (x) => x / (1 + Math.exp(-2 * SQ * (x + 0.044715 * x * x * x))),
  geluErf: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  sign: Math.sign,
  floor: Math.floor,
  ceil: Math.ceil,
  // half to even
  round: (x) => {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  },
};

let seed = 5;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}
/** Odd count (the kernel's single-element tail), specials, tiny, huge and ordinary values. */
function samples(n: number): Float32Array {
  const specials = [
    Number.NaN,
    Infinity,
    -Infinity,
    0,
    -0,
    1e-30,
    -1e-30,
    1e-8,
    -1e-8,
    88.8,
    89,
    -104,
    -87.4,
  ];
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rand();
    if (i < specials.length) out[i] = specials[i];
    else if (u < 0.1)
      out[i] = (rand() - 0.5) * 2e-3; // near 0, where cancellation bites
    else if (u < 0.2) out[i] = (rand() - 0.5) * 400;
    else if (u < 0.3)
      out[i] = Math.round((rand() - 0.5) * 20) / 2; // .5 ties for round
    else out[i] = (rand() - 0.5) * 24;
  }
  return out;
}

function run(op: ScalarOpName, x: Float32Array): Float32Array {
  const input = rt.storages.upload(x, 'float32');
  const root: Expr = {
    kind: 'op',
    op,
    args: [{ kind: 'load', input: 0, dtype: 'float32' }],
    dtype: 'float32',
  };
  const shape = [x.length];
  const view = { storage: input, shape, strides: contiguousStrides(shape), offset: 0 };
  const out = ew.run({ root, inputs: [view], consts: [], shape });
  if (!out) throw new Error(`${op} fell back to TypeScript`);
  return (out.handle as Float32Array).slice();
}

/** Distance in float32 ulps (0 for equal values, NaN pairs and ±0 pairs). */
function ulps(a: number, b: number): number {
  if (Number.isNaN(a) && Number.isNaN(b)) return 0;
  if (a === b) return 0;
  if (!Number.isFinite(a) || !Number.isFinite(b) || Number.isNaN(a) || Number.isNaN(b)) return Infinity;
  const i = new Int32Array(new Float32Array([a, b]).buffer);
  const key = (v: number) => (v < 0 ? -(v & 0x7fffffff) : v);
  return Math.abs(key(i[0]) - key(i[1]));
}

describe('wasm transcendental ops', () => {
  const x = samples(20001);
  for (const [op, ref] of Object.entries(reference) as [ScalarOpName, (x: number) => number][]) {
    it(`${op} rounds to the float32 of the float64 reference (≤ 1 ulp, rarely off)`, () => {
      const got = run(op, x);
      let off = 0;
      for (let i = 0; i < x.length; i++) {
        const want = Math.fround(ref(x[i]));
        const d = ulps(got[i], want);
        if (d > 1) throw new Error(`${op}(${x[i]}) = ${got[i]}, expected ${want} (${d} ulps)`);
        if (d === 1) off++;
        // signs of zeros as Math.* gives them (tanh(-0) = -0, sign(-0) = -0)
        if (want === 0 && got[i] === 0) expect(Object.is(got[i], want)).toBe(true);
      }
      expect(off).toBeLessThanOrEqual(2);
    });
  }
});
