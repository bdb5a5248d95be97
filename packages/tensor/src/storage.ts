import type { DType } from './dtype.js';

/** Where a tensor's memory lives: the TypeScript CPU backend or WebGPU. */
export type Device = 'cpu' | 'webgpu';

let nextStorageId = 0;

/**
 * A block of device memory holding `size` elements of `dtype`. Tensors are views over a storage;
 * several tensors may share one, and it is returned to its backend when the last of them is
 * disposed. `handle` is the backend's own object (a typed array on the CPU, a GPUBuffer on WebGPU).
 */
export class Storage<H = unknown> {
  /** Unique id, in creation order (kernel caches key bound buffers by it). */
  readonly id = nextStorageId++;
  /** Number of holders: live tensors viewing this storage, and lazy storages that read it. */
  refs = 0;
  /** True once the storage went back to its backend (no tensor views it any more). */
  released = false;
  /** Lazy storages whose programs read this one (computed first when this one is written in place). */
  users: Set<Storage> | null = null;

  constructor(
    /** Device holding the memory. */
    readonly device: Device,
    /** Element type. */
    readonly dtype: DType,
    /** Number of elements. */
    readonly size: number,
    /** Bytes held on the device (bool takes 4 bytes per element on WebGPU). */
    readonly bytes: number,
    /** The backend's object: a typed array on the CPU, a GPUBuffer on WebGPU. */
    public handle: H,
  ) {}
}

/** A strided view of a storage: what kernels receive. */
export interface View {
  /** The memory viewed. */
  readonly storage: Storage;
  /** Size of each dimension. */
  readonly shape: readonly number[];
  /** Storage elements to skip per step along each dimension (0 for a broadcast dimension). */
  readonly strides: readonly number[];
  /** Index in the storage of element `[0, 0, …]`. */
  readonly offset: number;
}
