import type { KernelName, KernelTable } from '../backend.js';
import { getKernel } from '../engine.js';
import { contiguousStrides } from '../shape.js';
import type { Storage, View } from '../storage.js';
import { Tensor } from '../tensor.js';

/** The kernel `name` of the backend `t` lives on. */
export function kernel<K extends KernelName>(op: string, t: Tensor, name: K): KernelTable[K] {
  return getKernel(op, t.device, name);
}

/** A new contiguous tensor over a fresh storage. */
export function wrap(storage: Storage, shape: readonly number[]): Tensor {
  return new Tensor(storage, shape, contiguousStrides(shape), 0);
}

/** The view of `t` read as `shape` via strides (used for broadcasting). */
export function viewAs(t: Tensor, shape: readonly number[], strides: readonly number[]): View {
  return { storage: t.storage, shape, strides, offset: t.offset };
}

export type TensorLike = Tensor | number | boolean;
