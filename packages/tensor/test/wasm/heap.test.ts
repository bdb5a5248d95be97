import { describe, expect, it } from 'vitest';
import { storageOf } from '../../src/backends/cpu/storage.js';
import { canShare, sizeClass, WasmHeap } from '../../src/backends/wasm/heap.js';
import { WasmStorages } from '../../src/backends/wasm/storage.js';
import { memory } from '../../src/engine.js';
import '../../src/index.js';

describe('wasm heap', () => {
  it('rounds requests to size classes with at most 25% slack, 64-byte aligned', () => {
    expect(sizeClass(1)).toBe(64);
    expect(sizeClass(65)).toBe(128);
    expect(sizeClass(256)).toBe(256);
    expect(sizeClass(257)).toBe(320);
    expect(sizeClass(1000)).toBe(1024);
    for (let b = 1; b < 1 << 22; b = Math.ceil(b * 1.37) + 1) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c % 64).toBe(0);
      if (b > 256) expect(c / b).toBeLessThanOrEqual(1.25);
    }
  });

  it('reuses freed blocks of the same class and grows on demand', () => {
    const heap = new WasmHeap({ initialBytes: 65536 });
    const a = heap.alloc(1000);
    const b = heap.alloc(1000);
    expect(a % 64).toBe(0);
    expect(b).not.toBe(a);
    heap.free(a);
    expect(heap.alloc(900)).toBe(a); // same class (1024): the free block comes back
    expect(heap.blocks).toBe(2);
    const before = heap.capacity;
    const big = heap.alloc(1 << 20);
    expect(heap.capacity).toBeGreaterThan(before);
    new Float32Array(heap.memory.buffer, big, 1 << 18).fill(1); // the block is addressable
    expect(() => heap.free(12345)).toThrow(/not a live block/);
  });

  it('names the bytes requested when the memory cannot grow enough', () => {
    const heap = new WasmHeap({ initialBytes: 65536, maximumBytes: 4 * 65536 });
    expect(() => heap.alloc(1_000_000)).toThrow(/cannot allocate 1000000 bytes.*4 GiB/);
    // near the limit a larger free block serves a smaller request
    const p = heap.alloc(150_000);
    heap.free(p);
    expect(heap.alloc(100_000)).toBe(p);
  });

  it('keeps views of a shared memory valid across a grow', () => {
    if (!canShare()) return;
    const heap = new WasmHeap({ initialBytes: 65536 });
    expect(heap.shared).toBe(true);
    const p = heap.alloc(64);
    const v = new Float32Array(heap.memory.buffer, p, 16);
    v[3] = 7;
    heap.alloc(8 << 20);
    expect(v[3]).toBe(7);
    expect(new Float32Array(heap.memory.buffer, p, 16)[3]).toBe(7);
  });
});

describe('wasm storages', () => {
  it('are counted cpu storages whose typed arrays live in the heap, freed on release', () => {
    const mem = new WasmStorages(new WasmHeap({ initialBytes: 65536 }));
    const before = memory().devices.cpu?.storages ?? 0;
    const s = mem.upload(new Float32Array([1, 2, 3]), 'float32');
    expect(memory().devices.cpu?.storages).toBe(before + 1);
    expect(Array.from(s.handle)).toEqual([1, 2, 3]);
    const addr = mem.address(s)!;
    expect(new Float32Array(mem.heap.memory.buffer, addr, 3)[2]).toBe(3);
    expect(mem.viewAddress({ storage: s, shape: [2], strides: [1], offset: 1 })).toBe(addr + 4);
    const b = mem.allocate('bool', 5);
    expect(b.handle).toBeInstanceOf(Uint8Array);
    expect(mem.address({ ...s, handle: new Float32Array(3) } as typeof s)).toBe(null);
    mem.release(s);
    expect(s.handle).toBe(null);
    expect(mem.heap.blocks).toBe(1);
  });

  it('adopts a plain TypeScript storage into the heap (values kept, handle swapped, freed on release)', () => {
    const mem = new WasmStorages(new WasmHeap({ initialBytes: 65536 }));
    const s = storageOf(new Int32Array([4, 5, 6]), 'int32');
    expect(mem.address(s)).toBe(null);
    const addr = mem.adopt(s);
    expect(mem.adopt(s)).toBe(addr); // once
    expect(Array.from(s.handle as Int32Array)).toEqual([4, 5, 6]);
    expect(new Int32Array(mem.heap.memory.buffer, addr, 3)[1]).toBe(5);
    expect(mem.adoptView({ storage: s, shape: [1], strides: [1], offset: 2 })).toBe(addr + 8);
    mem.release(s);
    expect(mem.heap.blocks).toBe(0);
  });

  it('re-derives views over a non-shared memory after it grew (they detach)', () => {
    const mem = new WasmStorages(new WasmHeap({ initialBytes: 65536, shared: false }));
    expect(mem.heap.shared).toBe(false);
    const s = mem.upload(new Int32Array([5, 6, 7]), 'int32');
    const old = s.handle;
    mem.allocate('float32', 1 << 20); // grows: the old buffer detaches
    expect(old.length).toBe(0);
    expect(Array.from(s.handle)).toEqual([5, 6, 7]);
    expect(mem.address(s)).not.toBe(null);
  });
});
