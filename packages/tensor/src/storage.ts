import type { DType } from './dtype.js';

/** Where a tensor's memory lives: the TypeScript CPU backend or WebGPU. */
export type Device = 'cpu' | 'webgpu';

let nextStorageId = 0;

/** Per device, how many times it was destroyed (`destroyWebGPU`); a storage keeps the count it was made under. */
const deviceGenerations = new Map<Device, number>();

/**
 * Marks every storage made on `device` so far as orphaned: the device was destroyed, so their
 * memory is gone even when a new device of that name is created later (engine/memory.ts calls it).
 */
export function retireDeviceStorages(device: Device): void {
  deviceGenerations.set(device, (deviceGenerations.get(device) ?? 0) + 1);
}

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
  /** How many times its device had been destroyed when it was made (see `orphaned`). */
  readonly generation: number;

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
  ) {
    this.generation = deviceGenerations.get(device) ?? 0;
  }

  /**
   * True when its device was destroyed after it was made (`destroyWebGPU`): its memory is gone,
   * it is no longer counted, and a tensor viewing it refuses every op.
   */
  get orphaned(): boolean {
    return this.generation !== (deviceGenerations.get(this.device) ?? 0);
  }
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
