import type { KernelName, KernelTable } from '../backend.js';
import { realize } from '../engine/lazy.js';
import { getKernel } from '../engine/registry.js';
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

/** The view of `t` read as `shape` via strides (for broadcasting), its storage computed for a kernel. */
export function viewAs(t: Tensor, shape: readonly number[], strides: readonly number[]): View {
  realize(t.storage);
  return { storage: t.storage, shape, strides, offset: t.offset };
}

/** Like `viewAs`, for an elementwise program: a lazy storage stays lazy. */
export function lazyViewAs(t: Tensor, shape: readonly number[], strides: readonly number[]): View {
  return { storage: t.storage, shape, strides, offset: t.offset };
}

export type TensorLike = Tensor | number | boolean;
