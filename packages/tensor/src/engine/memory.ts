import type { DType } from '../dtype.js';
import type { ElementwiseProgram } from '../expr/program.js';
import { type Device, retireDeviceStorages, Storage } from '../storage.js';
import { activeTrace } from './capture.js';
import { backendIfAny } from './registry.js';
import { claimSlot, isSlotBacked, moveSlot, releaseSlot } from './slots.js';

/**
 * Memory accounting: every storage a backend hands out is counted here, with the tensors viewing
 * it, per device. A storage returns to its backend when its last holder lets go.
 */

/**
 * What a lazy storage will hold: the elementwise program that computes it (its inputs may be
 * lazy too), the op the user called (for errors), and the chain length so far (for the cap).
 * Kept beside the storage rather than in it, so storage.ts knows nothing of programs.
 */
export interface LazyValue {
  readonly program: ElementwiseProgram;
  readonly op: string;
  readonly nodes: number;
}

const lazyValues = new WeakMap<Storage, LazyValue>();

/** The program that will compute `s`, or undefined once it holds memory (engine/lazy.ts). */
export function lazyOf(s: Storage): LazyValue | undefined {
  return lazyValues.get(s);
}

/** Makes `s` lazy: it holds no memory until `value.program` runs. */
export function setLazy(s: Storage, value: LazyValue): void {
  lazyValues.set(s, value);
}

interface DeviceMemory {
  tensors: number;
  storages: number;
  bytes: number;
}
const memoryByDevice = new Map<Device, DeviceMemory>();
/** Bytes of live storages on all devices, and their largest value since `resetPeakMemory()`. */
let totalBytes = 0;
let peakBytes = 0;

function countBytes(m: DeviceMemory, delta: number): void {
  m.bytes += delta;
  totalBytes += delta;
  if (totalBytes > peakBytes) peakBytes = totalBytes;
}

function deviceMemory(device: Device): DeviceMemory {
  let m = memoryByDevice.get(device);
  if (!m) {
    m = { tensors: 0, storages: 0, bytes: 0 };
    memoryByDevice.set(device, m);
  }
  return m;
}

/**
 * Creates a storage and counts it; backends call this for every allocation they hand out.
 *
 * @example
 * // in a backend's upload(): allocate, then hand the handle to the engine for accounting
 * const storage = lr.newStorage('cpu', 'float32', data.length, data.byteLength, data);
 */
export function newStorage<H>(
  device: Device,
  dtype: DType,
  size: number,
  bytes: number,
  handle: H,
): Storage<H> {
  const m = deviceMemory(device);
  m.storages++;
  countBytes(m, bytes);
  const s = new Storage(device, dtype, size, bytes, handle);
  activeTrace()?.created(s);
  claimSlot(s);
  if (!isSlotBacked(s)) backendAllocations++;
  return s;
}

let backendAllocations = 0;

/**
 * Storages made so far that took memory from their backend (not a captured step's memory-plan
 * slot): tests of "a replay allocates nothing" read it before and after a replay.
 *
 * @example
 * const before = backendAllocationCount();
 * step(x); // a replay: only its outputs (and per-call uploads) allocate
 * backendAllocationCount() - before; // 1 for a step returning the loss
 */
export function backendAllocationCount(): number {
  return backendAllocations;
}

export function retainStorage(s: Storage): void {
  if (s.released) throw new Error('internal: retaining a released storage');
  s.refs++;
}

export function releaseStorage(s: Storage): void {
  if (--s.refs > 0 || s.released) return;
  s.released = true;
  if (s.orphaned) {
    // its device was destroyed (forgetDevice): uncounted already, and no backend may take it back
    lazyValues.delete(s);
    return;
  }
  const m = deviceMemory(s.device);
  m.storages--;
  countBytes(m, -s.bytes);
  // after destroyWebGPU() the device's memory is already gone: there is nothing to give back
  if (lazyValues.has(s)) releaseLazyInputs(s);
  else if (releaseSlot(s))
    s.handle = null; // a memory-plan slot: the capture keeps its memory
  else backendIfAny(s.device)?.release(s);
}

/**
 * Lets go of what a lazy storage holds: the storages its program reads (it retained each once,
 * and registered itself as their user). Called when it is computed or released uncomputed.
 */
export function releaseLazyInputs(s: Storage): void {
  const lazy = lazyValues.get(s);
  if (!lazy) return;
  lazyValues.delete(s);
  for (const input of distinctStorages(lazy.program.inputs)) {
    input.users?.delete(s);
    releaseStorage(input);
  }
}

/** Retains each distinct storage `s`'s program reads and registers `s` as its user. */
export function retainLazyInputs(s: Storage): void {
  const lazy = lazyValues.get(s);
  if (!lazy) return;
  for (const input of distinctStorages(lazy.program.inputs)) {
    retainStorage(input);
    input.users ??= new Set();
    input.users.add(s);
  }
}

function distinctStorages(views: readonly { readonly storage: Storage }[]): Set<Storage> {
  const out = new Set<Storage>();
  for (const v of views) out.add(v.storage);
  return out;
}

/**
 * Gives the memory of `fresh` (just computed by a kernel) to `target` (the lazy storage it was
 * computed for), so every tensor viewing `target` sees the values; `fresh` is uncounted.
 */
export function adoptMemory(target: Storage, fresh: Storage): void {
  activeTrace()?.adopt(target, fresh);
  moveSlot(fresh, target);
  target.handle = fresh.handle;
  fresh.handle = null;
  fresh.released = true;
  const m = deviceMemory(fresh.device);
  m.storages--;
  countBytes(m, -fresh.bytes);
}

export function countTensor(device: Device, delta: 1 | -1): void {
  deviceMemory(device).tensors += delta;
}

/**
 * Forgets every tensor and storage of `device`, whose memory went away with it (`destroyWebGPU`):
 * `memory()` stops counting them, and their storages become orphaned (tensors viewing them refuse
 * ops; disposing them counts nothing and gives nothing back to a backend made later).
 */
export function forgetDevice(device: Device): void {
  const m = deviceMemory(device);
  countBytes(m, -m.bytes);
  m.tensors = 0;
  m.storages = 0;
  retireDeviceStorages(device);
}

/** Quantized weights of one storage format: how many, their bytes, and their float32 size. */
export interface QuantizedBytes {
  /** Live quantized weights of the format. */
  count: number;
  /** Bytes of their codes and scales (counted in `numBytes` too, as int32/float32 storages). */
  bytes: number;
  /** Bytes the same matrices take in float32. */
  f32Bytes: number;
}

/** A quantized weight as `memory()` counts it (quant/weight.ts registers each one it makes). */
export interface QuantizedHolder {
  /** Storage format ('nf4', 'int8'). */
  readonly format: string;
  /** Device bytes of its codes and scales. */
  readonly bytes: number;
  /** Bytes of the same matrix in float32. */
  readonly f32Bytes: number;
  /** True once it (or, through a module's dispose, its codes) was freed. */
  readonly isDisposed: boolean;
}

const quantizedHolders = new Set<QuantizedHolder>();

/** Counts a quantized weight in `memory().quantized` until it is disposed. */
export function trackQuantized(h: QuantizedHolder): void {
  quantizedHolders.add(h);
}

/** The live quantized weights, by format (those disposed meanwhile are dropped). */
export function quantizedByFormat(): Record<string, QuantizedBytes> {
  const out: Record<string, QuantizedBytes> = {};
  for (const h of quantizedHolders) {
    if (h.isDisposed) {
      quantizedHolders.delete(h);
      continue;
    }
    const f = out[h.format] ?? { count: 0, bytes: 0, f32Bytes: 0 };
    f.count++;
    f.bytes += h.bytes;
    f.f32Bytes += h.f32Bytes;
    out[h.format] = f;
  }
  return out;
}

/** What `memory()` reports. */
export interface MemoryInfo {
  /** Live (not disposed) tensors on all devices. */
  numTensors: number;
  /** Bytes held by live storages on all devices. */
  numBytes: number;
  /** Per device: live tensors, storages and bytes. */
  devices: Partial<Record<Device, DeviceMemory>>;
  /** Quantized weights (`QuantizedWeight`) by storage format ('nf4', 'int8'), beside their float32 size. */
  quantized: Record<string, QuantizedBytes>;
}

/**
 * Live tensors and bytes, overall and per device, and the quantized weights among them by format.
 *
 * @example
 * const before = lr.memory().numTensors;
 * const t = lr.zeros([2]);
 * lr.memory().numTensors - before; // 1
 */
export function memory(): MemoryInfo {
  const devices: Partial<Record<Device, DeviceMemory>> = {};
  let numTensors = 0;
  let numBytes = 0;
  for (const [d, m] of memoryByDevice) {
    devices[d] = { ...m };
    numTensors += m.tensors;
    numBytes += m.bytes;
  }
  return { numTensors, numBytes, devices, quantized: quantizedByFormat() };
}

/**
 * The largest `memory().numBytes` since `resetPeakMemory()` (or the start), on all devices. A
 * lazy storage counts at its full size from its creation, and for a moment twice when it is
 * computed (its value and its memory). Kept out of `memory()` so that snapshots of it compare
 * equal across a step that frees what it made.
 *
 * @example
 * lr.resetPeakMemory();
 * lr.tidy(() => x.matmul(x).sum());
 * lr.peakMemory(); // bytes live at the step's highest point
 */
export function peakMemory(): number {
  return peakBytes;
}

/**
 * Restarts `peakMemory()` from the bytes live now (to measure one step's peak).
 *
 * @example
 * lr.resetPeakMemory();
 */
export function resetPeakMemory(): void {
  peakBytes = totalBytes;
}
