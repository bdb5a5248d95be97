import { describe, expect, it } from 'vitest';
import { features, ModuleBuilder, madd } from '../../src/backends/wasm/assembler.js';

type Fn = (...args: number[]) => number;

function instantiate(m: ModuleBuilder, memory?: WebAssembly.Memory): Record<string, Fn> {
  const bytes = m.encode();
  expect(WebAssembly.validate(bytes)).toBe(true);
  const imports: WebAssembly.Imports = memory ? { env: { memory } } : {};
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
  return inst.exports as unknown as Record<string, Fn>;
}

describe('wasm assembler', () => {
  it('names its functions in the custom name section (profiles say gemm, not wasm-function[2])', () => {
    const m = new ModuleBuilder();
    m.importFunction('host', ['i32'], []);
    const one = m.function('one', [], ['i32']);
    one.i32(1);
    const mod = new WebAssembly.Module(m.encode());
    const [section] = WebAssembly.Module.customSections(mod, 'name');
    const b = new Uint8Array(section);
    // subsection 1 (function names): size, count 2, then (index, length, utf-8 name) pairs
    expect(b[0]).toBe(1);
    expect([...b.subarray(2)]).toEqual([2, 0, 4, ...Buffer.from('host'), 1, 3, ...Buffer.from('one')]);
  });

  it('assembles i32/f32/f64 arithmetic with params and results', () => {
    const m = new ModuleBuilder();
    const add = m.function('add', ['i32', 'i32'], ['i32']);
    add.get(add.param(0)).get(add.param(1)).op('i32.add');
    const neg = m.function('neg', ['i32'], ['i32']);
    neg.i32(-1234567).get(neg.param(0)).op('i32.mul');
    const hyp = m.function('hyp', ['f64', 'f64'], ['f64']);
    const [x, y] = [hyp.param(0), hyp.param(1)];
    hyp.get(x).get(x).op('f64.mul').get(y).get(y).op('f64.mul', 'f64.add', 'f64.sqrt');
    const half = m.function('half', ['f32'], ['f32']);
    half.get(half.param(0)).f32(0.5).op('f32.mul');
    const e = instantiate(m);
    expect(e.add(2, 40)).toBe(42);
    expect(e.add(2 ** 31 - 1, 1)).toBe(-(2 ** 31)); // i32 wraps
    expect(e.neg(3)).toBe(-3703701);
    expect(e.hyp(3, 4)).toBe(5);
    expect(e.half(3)).toBe(1.5);
  });

  it('runs loops, ifs and locals (sum of 0..n-1, and a branchy max)', () => {
    const m = new ModuleBuilder();
    const sum = m.function('sum', ['i32'], ['i32']);
    const i = sum.local('i32');
    const acc = sum.local('i32');
    sum.for(i, 0, sum.param(0), 1, () => {
      sum.get(acc).get(i).op('i32.add').set(acc);
    });
    sum.get(acc);
    const max = m.function('max', ['i32', 'i32'], ['i32']);
    const r = max.local('i32');
    max.get(max.param(0)).get(max.param(1)).op('i32.gt_s');
    max.if(
      () => max.get(max.param(0)).set(r),
      () => max.get(max.param(1)).set(r),
    );
    max.get(r);
    const e = instantiate(m);
    expect(e.sum(0)).toBe(0);
    expect(e.sum(100)).toBe(4950);
    expect(e.max(3, -7)).toBe(3);
    expect(e.max(-8, -7)).toBe(-7);
  });

  it('calls functions of the same module', () => {
    const m = new ModuleBuilder();
    const sq = m.function('sq', ['f64'], ['f64']);
    sq.get(sq.param(0)).get(sq.param(0)).op('f64.mul');
    const quartic = m.function('quartic', ['f64'], ['f64']);
    quartic.get(quartic.param(0)).call(sq, m).call(sq, m);
    expect(instantiate(m).quartic(3)).toBe(81);
  });

  it('loads and stores through an imported memory, with f32x4 SIMD and madd', () => {
    const fused = features().relaxedSimd;
    const memory = new WebAssembly.Memory({ initial: 1 });
    const m = new ModuleBuilder({ initial: 1, shared: false });
    // axpy4(x, y, n): y[i] += 2·x[i] for i < n (n a multiple of 4), four lanes at a time
    const f = m.function('axpy4', ['i32', 'i32', 'i32'], []);
    const [x, y, n] = [f.param(0), f.param(1), f.param(2)];
    const i = f.local('i32');
    const two = f.local('v128');
    f.f32(2).op('f32x4.splat').set(two);
    f.for(i, 0, n, 4, () => {
      f.get(y).get(i).i32(2).op('i32.shl', 'i32.add'); // address of y[i]
      madd(
        f,
        fused,
        () => f.get(x).get(i).i32(2).op('i32.shl', 'i32.add').mem('v128.load'),
        () => f.get(two),
        () => f.get(y).get(i).i32(2).op('i32.shl', 'i32.add').mem('v128.load'),
      );
      f.mem('v128.store');
    });
    // lane and scalar access: returns x[1] + y[2] as f32
    const g = m.function('peek', ['i32', 'i32'], ['f32']);
    g.get(g.param(0)).mem('v128.load').lane('f32x4.extract_lane', 1);
    g.get(g.param(1)).mem('f32.load', 8).op('f32.add');
    const e = instantiate(m, memory);
    const heap = new Float32Array(memory.buffer);
    for (let k = 0; k < 8; k++) {
      heap[k] = k; // x at byte 0
      heap[16 + k] = 100 * k; // y at byte 64
    }
    e.axpy4(0, 64, 8);
    expect(Array.from(heap.subarray(16, 24))).toEqual([0, 102, 204, 306, 408, 510, 612, 714]);
    expect(e.peek(0, 64)).toBe(1 + 204);
  });

  it('imports a shared memory when SharedArrayBuffer exists', () => {
    if (!features().threads) return;
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true });
    const m = new ModuleBuilder({ initial: 1, maximum: 4, shared: true });
    const f = m.function('poke', ['i32', 'i32'], []);
    f.get(f.param(0)).get(f.param(1)).mem('i32.store');
    instantiate(m, memory).poke(8, 77);
    expect(new Int32Array(memory.buffer)[2]).toBe(77);
  });

  it('probes features without throwing, and rejects unbalanced or unknown code', () => {
    const f = features();
    expect(f.simd).toBe(true);
    expect(typeof f.relaxedSimd).toBe('boolean');
    const m = new ModuleBuilder();
    const bad = m.function('bad', [], ['i32']);
    bad.f32(1); // wrong result type: the module must not validate
    expect(WebAssembly.validate(m.encode())).toBe(false);
    expect(() => new ModuleBuilder({ initial: 1, shared: true }).encode()).toThrow(/maximum/);
  });
});
