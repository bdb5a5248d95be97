import type { DType, TypedArray } from '../../dtype.js';
import { type SlotMemory, slotHandle } from '../../engine/slots.js';
import { newStorage } from '../../engine.js';
import type { Storage, View } from '../../storage.js';
import { WasmHeap } from './heap.js';

const BYTES: Record<DType, number> = { float32: 4, int32: 4, bool: 1 };

function viewOver(buffer: ArrayBufferLike, dtype: DType, ptr: number, size: number): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer, ptr, size);
    case 'int32':
      return new Int32Array(buffer, ptr, size);
    case 'bool':
      return new Uint8Array(buffer, ptr, size);
  }
}

/**
 * CPU storages whose typed arrays are views into a `WasmHeap`: the TypeScript kernels read them
 * like any typed array, and the Wasm kernels take their addresses with no copy. Each storage's
 * block is freed when the engine releases it. Over a non-shared memory (a browser page that is
 * not cross-origin isolated), a grow detaches the views: they are re-derived in place
 * (`storage.handle` is replaced), so a kernel must take its views after it allocated.
 *
 * NOTE: re-deriving finds a storage by the block it was allocated with. The lazy engine's
 * `adoptMemory(target, fresh)` moves a handle to another Storage object, which this map does not
 * see; in Node (always shared memory) nothing is re-derived, but a non-isolated page needs the
 * engine to tell the backend about such moves before the Wasm backend can be its default there.
 */
export class WasmStorages {
  private readonly addresses = new WeakMap<object, number>();
  private readonly storages = new Map<number, Storage>();

  constructor(readonly heap: WasmHeap = new WasmHeap()) {
    if (!heap.shared) heap.onGrow(() => this.rederive());
  }

  /**
   * A new counted 'cpu' storage of `size` elements in the heap (contents undefined).
   *
   * @example
   * const mem = new WasmStorages();
   * const s = mem.allocate('float32', 1024);
   * (s.handle as Float32Array).fill(0);
   */
  allocate(dtype: DType, size: number): Storage<TypedArray> {
    const bytes = size * BYTES[dtype];
    const slot = slotHandle('cpu', dtype, size, bytes, false);
    if (slot) return newStorage('cpu', dtype, size, bytes, slot as TypedArray);
    const ptr = this.heap.alloc(bytes);
    const view = viewOver(this.heap.memory.buffer, dtype, ptr, size);
    const s = newStorage('cpu', dtype, size, bytes, view);
    this.addresses.set(view, ptr);
    this.storages.set(ptr, s);
    return s;
  }

  /**
   * A zero-filled typed array of `size` elements in the heap, not yet a storage: the CPU
   * kernels' output allocator (`setCpuArrayAllocator`). Its block is freed when the storage that
   * wraps it is released (`release` finds the block by the array). Only over a shared memory,
   * whose views a grow never detaches (these arrays are not re-derived).
   *
   * @example
   * const out = mem.array('float32', 1024);
   * storageOf(out, 'float32'); // a counted storage; releasing it frees the block
   */
  array(dtype: DType, size: number): TypedArray {
    const ptr = this.heap.alloc(size * BYTES[dtype]);
    const view = viewOver(this.heap.memory.buffer, dtype, ptr, size);
    view.fill(0);
    this.addresses.set(view, ptr);
    return view;
  }

  /**
   * A memory-plan slot in the heap (`Backend.reserve`): its views are registered like a storage's,
   * so Wasm kernels take their addresses with no copy; only over a shared memory, whose views a
   * grow never detaches (null otherwise: the plan's slots are then not bound).
   *
   * @example
   * const slot = mem.reserve(4096);
   * slot?.view('float32', 1024, false); // a Float32Array in the heap
   */
  reserve(bytes: number): SlotMemory | null {
    if (!this.heap.shared) return null;
    const ptr = this.heap.alloc(bytes);
    return {
      bytes,
      view: (dtype, size, zeroed) => {
        const view = viewOver(this.heap.memory.buffer, dtype, ptr, size);
        if (zeroed) view.fill(0);
        this.addresses.set(view, ptr);
        return view;
      },
      free: () => this.heap.free(ptr),
    };
  }

  /**
   * A heap storage holding a copy of `data`.
   *
   * @example
   * const s = mem.upload(new Float32Array([1, 2, 3]), 'float32');
   */
  upload(data: TypedArray, dtype: DType): Storage<TypedArray> {
    const s = this.allocate(dtype, data.length);
    s.handle.set(data);
    return s;
  }

  /**
   * Byte address of the storage's element 0 in the heap, or null for a storage outside it
   * (a plain typed array made by a TypeScript kernel).
   *
   * @example
   * mem.address(s.storage); // e.g. 1024
   */
  address(storage: Storage): number | null {
    const h = storage.handle;
    return h !== null && typeof h === 'object' ? (this.addresses.get(h) ?? null) : null;
  }

  /**
   * Byte address of a view's first element (`offset` included), or null outside the heap.
   *
   * @example
   * mem.viewAddress(view); // address(view.storage) + 4 * view.offset for float32
   */
  viewAddress(v: View): number | null {
    const base = this.address(v.storage);
    return base === null ? null : base + v.offset * BYTES[v.storage.dtype];
  }

  /**
   * Moves a storage outside the heap (a typed array made by a TypeScript kernel) into it: its
   * values are copied into a new block and `storage.handle` becomes a view of that block, as
   * the lazy engine's `adoptMemory` swaps handles. Kernels hold no typed array across calls, so
   * nothing else sees the old array; from then on every Wasm kernel reads the storage with no
   * copy (weights migrate on their first matmul or Adam step, once). Returns the address.
   *
   * @example
   * const s = storageOf(new Float32Array([1, 2]), 'float32'); // a plain TypeScript storage
   * mem.adopt(s); // its address; s.handle is now a view of the heap
   */
  adopt(storage: Storage): number {
    const known = this.address(storage);
    if (known !== null) return known;
    const data = storage.handle as TypedArray;
    const ptr = this.heap.alloc(data.byteLength);
    const view = viewOver(this.heap.memory.buffer, storage.dtype, ptr, data.length);
    view.set(data);
    storage.handle = view;
    this.addresses.set(view, ptr);
    this.storages.set(ptr, storage);
    return ptr;
  }

  /**
   * Address of a view's first element, adopting its storage into the heap first if needed.
   *
   * @example
   * mem.adoptView(view); // = viewAddress(view) once adopted
   */
  adoptView(v: View): number {
    return this.adopt(v.storage) + v.offset * BYTES[v.storage.dtype];
  }

  /**
   * Frees the block behind a heap storage; other storages are left to the garbage collector.
   *
   * @example
   * mem.release(s); // what the backend's release() calls
   */
  release(storage: Storage): void {
    const ptr = this.address(storage);
    storage.handle = null;
    if (ptr === null) return;
    this.storages.delete(ptr);
    this.heap.free(ptr);
  }

  private rederive(): void {
    const buffer = this.heap.memory.buffer;
    for (const [ptr, s] of this.storages) {
      const view = viewOver(buffer, s.dtype, ptr, s.size);
      this.addresses.set(view, ptr);
      s.handle = view;
    }
  }
}
