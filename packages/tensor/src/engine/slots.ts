import type { DType } from '../dtype.js';
import type { Device, Storage } from '../storage.js';

/**
 * The memory plan's slots, bound while a captured step replays (compile/step.ts). A slot is a
 * block of device memory the capture reserved once (`Backend.reserve`); before each recorded call
 * the replay leases the slots of the values the call makes, and the backends' output allocators
 * (`slotHandle`) hand out a view of a leased slot instead of taking memory from their pools. A
 * storage made over a slot returns nothing to its backend when released: the slot stays the
 * capture's. Outside a replay each hook here costs one null check.
 */

/** A block a backend reserved for a capture: views of it become the handles of storages. */
export interface SlotMemory {
  /** Bytes it holds (at least the largest value the plan puts in it). */
  readonly bytes: number;
  /** A handle over the block's first `size` elements of `dtype` (zero-filled when `zeroed`). */
  view(dtype: DType, size: number, zeroed: boolean): object;
  /** Gives the block back to its backend (the capture was dropped). */
  free(): void;
}

/**
 * One value a recorded call is about to make, and the slot the plan put it in: a storage, or a
 * kernel's scratch (a buffer it takes and gives back within the call: partial sums, say).
 */
export interface SlotLease {
  readonly kind: 'storage' | 'scratch';
  readonly device: Device;
  /** The value's bytes as its backend counts them (a storage of that many bytes takes the lease). */
  readonly bytes: number;
  readonly memory: SlotMemory;
  /** The handle given out for it, then the storage made over that handle (null: not taken yet). */
  handle: object | null;
  storage: Storage | null;
}

let leases: readonly SlotLease[] | null = null;
const slotBacked = new WeakSet<Storage>();
/** Scratch handles given out from slots and not yet given back. */
const leasedScratch = new WeakSet<object>();

/**
 * Runs `fn` (one recorded call of a replay) with `open` leased: the first allocations of
 * matching device and bytes get views of their slots. Returns fn's result.
 */
export function withSlotLeases<T>(open: readonly SlotLease[], fn: () => T): T {
  const outer = leases;
  leases = open;
  try {
    return fn();
  } finally {
    leases = outer;
  }
}

/**
 * For a backend's output allocator: a handle for a new storage of `size` elements of `dtype`
 * (`bytes` as the backend counts them) from a slot leased to the running call, or null (no
 * replay, or no lease of that size left: allocate as usual). Wrap it in a storage at once
 * (`newStorage`, which claims it).
 */
export function slotHandle(
  device: Device,
  dtype: DType,
  size: number,
  bytes: number,
  zeroed: boolean,
): object | null {
  if (leases === null) return null;
  for (const l of leases) {
    if (l.kind === 'storage' && l.handle === null && l.device === device && l.bytes === bytes) {
      l.handle = l.memory.view(dtype, size, zeroed);
      return l.handle;
    }
  }
  return null;
}

/**
 * For a backend's scratch allocator: a slot leased to the running call for scratch of `bytes`,
 * or null. The backend's release of scratch asks `releaseScratch` first.
 */
export function scratchHandle(device: Device, bytes: number): object | null {
  if (leases === null) return null;
  for (const l of leases) {
    if (l.kind === 'scratch' && l.handle === null && l.device === device && l.bytes === bytes) {
      l.handle = l.memory.view('float32', Math.ceil(bytes / 4), false);
      leasedScratch.add(l.handle);
      return l.handle;
    }
  }
  return null;
}

/** A backend's scratch release: true (and forgotten) for scratch in a slot, whose memory stays put. */
export function releaseScratch(handle: object): boolean {
  return leasedScratch.delete(handle);
}

/** newStorage's side: `s` wraps a leased slot's handle, so it is slot-backed. */
export function claimSlot(s: Storage): void {
  if (leases === null) return;
  for (const l of leases) {
    if (l.kind === 'storage' && l.handle !== null && l.storage === null && l.handle === s.handle) {
      l.storage = s;
      slotBacked.add(s);
      return;
    }
  }
}

/** releaseStorage's side: true (and forgotten) when `s` lives in a slot, whose memory stays put. */
export function releaseSlot(s: Storage): boolean {
  return slotBacked.delete(s);
}

/** adoptMemory's side: `target` took `fresh`'s handle, and with it the slot. */
export function moveSlot(fresh: Storage, target: Storage): void {
  if (slotBacked.delete(fresh)) slotBacked.add(target);
}

/**
 * Whether `s` lives in a memory-plan slot of a captured step.
 *
 * @example
 * isSlotBacked(t.storage); // false for tensors made outside a replay
 */
export function isSlotBacked(s: Storage): boolean {
  return slotBacked.has(s);
}
