import { describe, expect, it } from 'vitest';
import { elementwise as tsElementwise } from '../../src/backends/cpu/elementwise.js';
import { canonicalConsts, WasmElementwise } from '../../src/backends/wasm/elementwise.js';
import { WasmRuntime } from '../../src/backends/wasm/runtime.js';
import type { ElementwiseProgram, Expr } from '../../src/expr/program.js';
import type { View } from '../../src/storage.js';
import '../../src/index.js';
import { constOf as c, loadOf as load, opOf as op } from '../../src/expr/build.js';

/**
 * The Wasm elementwise compiler reads equal constants as one (`canonicalConsts`), so subtrees
 * that differ only in which copy of a constant they read are computed once: the values must not
 * change (against the TypeScript kernel), and a program of the same shape whose constants
 * differ must not reuse the merged kernel.
 */
const rt = new WasmRuntime();
const ew = new WasmElementwise(rt);

let seed = 21;
function values(n: number): Float32Array {
  return Float32Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed / 2 ** 32) * 8 - 4;
  });
}
function view(data: Float32Array): View {
  return { storage: rt.storages.upload(data, 'float32'), shape: [data.length], strides: [1], offset: 0 };
}
function program(root: Expr, inputs: View[], consts: number[]): ElementwiseProgram {
  return { root, inputs, consts: consts.map(Math.fround), shape: inputs[0].shape };
}
const run = (p: ElementwiseProgram): Float32Array => {
  const out = ew.run(p);
  if (!out) throw new Error('the Wasm compiler refused the program');
  return out.handle as Float32Array;
};

describe('Wasm elementwise with repeated constants', () => {
  it('canonicalConsts points equal constants at the first one and leaves distinct ones alone', () => {
    expect(canonicalConsts(op('add', c(0), c(1)), [2, 2])).toEqual(op('add', c(0), c(0)));
    expect(canonicalConsts(op('mul', c(1), op('neg', c(2))), [0, 3, 3])).toEqual(
      op('mul', c(1), op('neg', c(1))),
    );
    const distinct = op('add', c(0), c(1));
    expect(canonicalConsts(distinct, [2, 3])).toBe(distinct);
    // −0 and +0 are different constants
    expect(canonicalConsts(distinct, [0, -0])).toBe(distinct);
  });

  it('tanh-GELU backward (its tanh written twice with separate constant slots) equals the TypeScript kernel', () => {
    const x = view(values(1001));
    const g = view(values(1001));
    // g · (0.5(1 + t) + 0.5·x·(1 − t²)·k(1 + 3a·x²)), t = tanh(k(x + a·x³)), each t with its own constants
    const k = Math.sqrt(2 / Math.PI);
    const a = 0.044715;
    const t = (ka: number, aa: number) =>
      op(
        'tanh',
        op('mul', op('add', load(0), op('mul', op('mul', load(0), op('square', load(0))), c(aa))), c(ka)),
      );
    const root = op(
      'mul',
      load(1),
      op(
        'add',
        op('mul', c(2), op('add', c(3), t(0, 1))),
        op(
          'mul',
          op('mul', op('mul', c(4), load(0)), op('sub', c(5), op('square', t(6, 7)))),
          op('mul', c(8), op('add', c(9), op('mul', c(10), op('square', load(0))))),
        ),
      ),
    );
    const consts = [k, a, 0.5, 1, 0.5, 1, k, a, k, 1, 3 * a];
    const p = program(root, [x, g], consts);
    const got = run(p);
    const want = tsElementwise(p).handle as Float32Array;
    for (let i = 0; i < want.length; i++) {
      // tanh in float64x2 (math.ts, ≈ 1e-14) vs Math.tanh: a float32 ulp at most, then through the products
      expect(Math.abs(got[i] - want[i]), `element ${i}`).toBeLessThanOrEqual(
        4e-7 * (Math.abs(want[i]) + 1e-3),
      );
    }
  });

  it('does not reuse the merged kernel for the same structure with different constants', () => {
    const x = view(values(257));
    const root = op('add', op('mul', load(0), c(0)), op('mul', load(0), c(1)));
    for (const consts of [
      [0.5, 0.5],
      [0.5, 0.25],
      [3, 3],
      [3, -1],
    ]) {
      const p = program(root, [x], consts);
      const got = Array.from(run(p));
      const want = Array.from(tsElementwise(p).handle as Float32Array);
      expect(got, `consts ${consts}`).toEqual(want); // mul and add: the same float32 roundings
    }
  });
});
