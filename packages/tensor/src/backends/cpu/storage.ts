import { type DType, type TypedArray, typedArrayFor } from '../../dtype.js';
import { newStorage } from '../../engine.js';
import type { Storage } from '../../storage.js';

/** Wraps a typed array (owned from now on) as a counted CPU storage. */
export function storageOf(data: TypedArray, dtype: DType): Storage<TypedArray> {
  return newStorage('cpu', dtype, data.length, data.byteLength, data);
}

export function allocate(dtype: DType, size: number): Storage<TypedArray> {
  return storageOf(typedArrayFor(dtype, size), dtype);
}
