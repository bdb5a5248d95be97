/**
 * Element types. `bool` is stored one byte per element on the CPU (a Uint8Array of 0/1) and one
 * 32-bit word per element on WebGPU (WGSL has no 8-bit storage type); reads always give 0/1.
 */
export type DType = 'float32' | 'int32' | 'bool';

/** The CPU representation of a dtype: Float32Array (float32), Int32Array (int32), Uint8Array (bool). */
export type TypedArray = Float32Array | Int32Array | Uint8Array;

/** Every dtype: float32, int32, bool. */
export const DTYPES: readonly DType[] = ['float32', 'int32', 'bool'];

export function isDType(value: unknown): value is DType {
  return value === 'float32' || value === 'int32' || value === 'bool';
}

/** Allocates a zero-filled typed array of the CPU representation of `dtype`. */
export function typedArrayFor(dtype: DType, size: number): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(size);
    case 'int32':
      return new Int32Array(size);
    case 'bool':
      return new Uint8Array(size);
  }
}

/** The dtype whose CPU representation `array` is. */
export function dtypeOfArray(array: TypedArray): DType {
  if (array instanceof Float32Array) return 'float32';
  if (array instanceof Int32Array) return 'int32';
  return 'bool';
}

const RANK: Record<DType, number> = { bool: 0, int32: 1, float32: 2 };

/**
 * Result dtype of a binary arithmetic op: the wider of the two (bool < int32 < float32).
 *
 * @example
 * lr.promoteTypes('int32', 'float32'); // "float32"
 */
export function promoteTypes(a: DType, b: DType): DType {
  return RANK[a] >= RANK[b] ? a : b;
}

/**
 * Dtype that a plain JS number takes next to a tensor of dtype `other` (a "weak" scalar, as in
 * PyTorch): it never widens float32, but a non-integer next to an int/bool tensor gives float32.
 */
export function scalarDType(value: number | boolean, other: DType): DType {
  if (typeof value === 'boolean') return other;
  if (other === 'float32') return 'float32';
  if (!Number.isInteger(value)) return 'float32';
  return other === 'bool' ? 'int32' : other;
}
