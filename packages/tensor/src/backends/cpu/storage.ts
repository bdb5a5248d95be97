import { type DType, type TypedArray, typedArrayFor } from '../../dtype.js';
import { type SlotMemory, slotHandle } from '../../engine/slots.js';
import { newStorage } from '../../engine.js';
import type { Storage } from '../../storage.js';

/** Wraps a typed array (owned from now on) as a counted CPU storage. */
export function storageOf(data: TypedArray, dtype: DType): Storage<TypedArray> {
  return newStorage('cpu', dtype, data.length, data.byteLength, data);
}

export function allocate(dtype: DType, size: number): Storage<TypedArray> {
  return storageOf(cpuArray(dtype, size), dtype);
}

/**
 * Where the CPU kernels get the arrays they return as storages: `(dtype, size) => array` of
 * `size` elements, zero-filled. The Wasm backend sets it to views into its heap, so the
 * TypeScript kernels' outputs already live where the Wasm kernels read them (no copy when a Wasm
 * kernel takes an operand a TypeScript kernel made); the heap block is freed when the engine
 * releases the storage. Null (the default): plain typed arrays, reclaimed by the GC.
 */
export type CpuArrayAllocator = (dtype: DType, size: number) => TypedArray;

let allocator: CpuArrayAllocator | null = null;

/**
 * Sets (or with null, removes) the allocator of the CPU kernels' output arrays.
 *
 * @example
 * setCpuArrayAllocator((dtype, size) => heapView(dtype, size)); // the Wasm backend does this
 * setCpuArrayAllocator(null); // plain typed arrays again
 */
export function setCpuArrayAllocator(a: CpuArrayAllocator | null): void {
  allocator = a;
}

/**
 * A zero-filled array of `size` elements for a kernel's output storage (wrap it with
 * `storageOf` at once: an array from the Wasm heap that never becomes a storage is never freed).
 * Scratch arrays a kernel drops itself should stay plain typed arrays.
 *
 * @example
 * const out = cpuArray('float32', n);
 * // … fill out …
 * return storageOf(out, 'float32');
 */
export function cpuArray(dtype: DType, size: number): TypedArray {
  const slot = slotHandle('cpu', dtype, size, size * elementBytes(dtype), true);
  if (slot) return slot as TypedArray;
  return allocator ? allocator(dtype, size) : typedArrayFor(dtype, size);
}

/** Bytes one element of `dtype` takes in a CPU typed array. */
export function elementBytes(dtype: DType): number {
  return dtype === 'bool' ? 1 : 4;
}

/** A typed array of `size` elements of `dtype` over `buffer` at byte `offset`. */
export function viewOver(buffer: ArrayBufferLike, dtype: DType, offset: number, size: number): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer, offset, size);
    case 'int32':
      return new Int32Array(buffer, offset, size);
    case 'bool':
      return new Uint8Array(buffer, offset, size);
  }
}

/**
 * A memory-plan slot of the TypeScript CPU backend (`Backend.reserve`): an ArrayBuffer whose
 * views are the storages of the values a captured step's plan puts there.
 *
 * @example
 * const slot = reserveCpuSlot(4096);
 * slot.view('float32', 1024, true); // a zero-filled Float32Array over the slot
 */
export function reserveCpuSlot(bytes: number): SlotMemory {
  const buffer = new ArrayBuffer(Math.max(4, Math.ceil(bytes / 4) * 4));
  return {
    bytes: buffer.byteLength,
    view(dtype, size, zeroed) {
      const v = viewOver(buffer, dtype, 0, size);
      if (zeroed) v.fill(0);
      return v;
    },
    free() {},
  };
}
