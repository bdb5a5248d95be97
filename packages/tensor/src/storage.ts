import type { DType } from './dtype.js';

export type Device = 'cpu' | 'webgpu';

/**
 * A block of device memory holding `size` elements of `dtype`. Tensors are views over a storage;
 * several tensors may share one, and it is returned to its backend when the last of them is
 * disposed. `handle` is the backend's own object (a typed array on the CPU, a GPUBuffer on WebGPU).
 */
export class Storage<H = unknown> {
  /** Number of live tensors viewing this storage. */
  refs = 0;
  released = false;

  constructor(
    readonly device: Device,
    readonly dtype: DType,
    readonly size: number,
    readonly bytes: number,
    public handle: H,
  ) {}
}

/** A strided view of a storage: what kernels receive. */
export interface View {
  readonly storage: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}
