import type { Backend, KernelName, KernelTable } from './backend.js';
import type { DType } from './dtype.js';
import { OpError } from './errors.js';
import { type Device, Storage } from './storage.js';
import type { Tensor } from './tensor.js';

/**
 * Process-wide state: registered backends and their kernels, the default device, tidy scopes,
 * memory accounting and the autograd hook. Nothing else in the tensor package is global.
 */

const backends = new Map<Device, Backend>();
const kernelRegistry = new Map<Device, Partial<KernelTable>>();
let defaultDevice: Device = 'cpu';

/**
 * Makes a backend available under its device name (`init` does this for CPU and WebGPU).
 *
 * @example
 * lr.registerBackend(myBackend); // a Backend whose device is, say, 'webgpu'
 * lr.setDefaultDevice(myBackend.device);
 */
export function registerBackend(backend: Backend): void {
  backends.set(backend.device, backend);
}

export function unregisterBackend(device: Device): void {
  backends.delete(device);
}

/**
 * Registers kernels for a device by op name (later registrations replace earlier ones).
 *
 * @example
 * // kernels are looked up by device and name at every op, so this takes effect at once
 * lr.registerKernels('cpu', { matmul: myMatmul }); // (a, b, batch, m, k, n) => Storage
 */
export function registerKernels(device: Device, kernels: Partial<KernelTable>): void {
  kernelRegistry.set(device, { ...kernelRegistry.get(device), ...kernels });
}

/**
 * The backend registered for `device`; throws when there is none (call `init` first for WebGPU).
 *
 * @example
 * lr.getBackend('cpu').description; // "CPU (TypeScript)"
 */
export function getBackend(device: Device): Backend {
  const b = backends.get(device);
  if (!b) {
    throw new Error(
      device === 'webgpu'
        ? "device 'webgpu' is not initialised: call `await init({ backend: 'webgpu' })` first"
        : `device '${device}' has no registered backend`,
    );
  }
  return b;
}

/**
 * Whether a backend is registered for `device`.
 *
 * @example
 * lr.hasBackend('cpu'); // true
 */
export function hasBackend(device: Device): boolean {
  return backends.has(device);
}

export function getKernel<K extends KernelName>(op: string, device: Device, name: K): KernelTable[K] {
  const k = kernelRegistry.get(device)?.[name];
  if (!k) throw new OpError(op, `kernel '${name}' is not registered for backend '${device}'`);
  return k;
}

/**
 * Names of kernels a device lacks (a test asserts this list is empty for every backend).
 *
 * @example
 * lr.missingKernels('cpu', lr.KERNEL_NAMES); // []
 */
export function missingKernels(device: Device, all: readonly KernelName[]): KernelName[] {
  const reg = kernelRegistry.get(device) ?? {};
  return all.filter((n) => !reg[n]);
}

/**
 * The device new tensors go to when no `device` option is given.
 *
 * @example
 * lr.getDefaultDevice(); // "cpu" until init() picks WebGPU
 */
export function getDefaultDevice(): Device {
  return defaultDevice;
}

/**
 * Sets the device new tensors go to; throws when no backend is registered for it.
 *
 * @example
 * lr.setDefaultDevice('cpu');
 */
export function setDefaultDevice(device: Device): void {
  getBackend(device);
  defaultDevice = device;
}

// ---------------------------------------------------------------------------------------------
// Memory accounting

interface DeviceMemory {
  tensors: number;
  storages: number;
  bytes: number;
}
const memoryByDevice = new Map<Device, DeviceMemory>();

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
  m.bytes += bytes;
  return new Storage(device, dtype, size, bytes, handle);
}

export function retainStorage(s: Storage): void {
  if (s.released) throw new Error('internal: retaining a released storage');
  s.refs++;
}

export function releaseStorage(s: Storage): void {
  if (--s.refs > 0 || s.released) return;
  s.released = true;
  const m = deviceMemory(s.device);
  m.storages--;
  m.bytes -= s.bytes;
  // after destroyWebGPU() the device's memory is already gone: there is nothing to give back
  backends.get(s.device)?.release(s);
}

export function countTensor(device: Device, delta: 1 | -1): void {
  deviceMemory(device).tensors += delta;
}

/** What `memory()` reports. */
export interface MemoryInfo {
  /** Live (not disposed) tensors on all devices. */
  numTensors: number;
  /** Bytes held by live storages on all devices. */
  numBytes: number;
  /** Per device: live tensors, storages and bytes. */
  devices: Partial<Record<Device, DeviceMemory>>;
}

/**
 * Live tensors and bytes, overall and per device.
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
  return { numTensors, numBytes, devices };
}

// ---------------------------------------------------------------------------------------------
// tidy scopes

const scopes: Set<Tensor>[] = [];

/** Called by every new Tensor: the innermost tidy scope (if any) will dispose it. */
export function trackTensor(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

/**
 * Exempts a tensor from disposal by the enclosing tidy scopes. Returns it.
 *
 * @example
 * let kept!: lr.Tensor;
 * const y = lr.tidy(() => {
 *   kept = lr.keep(lr.ones([2]).mul(2)); // survives although not returned
 *   return kept.add(1);
 * });
 */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/** What `tidy` searches for tensors to keep: a tensor, or arrays/objects of them, nested. */
export type TensorContainer =
  | Tensor
  | readonly TensorContainer[]
  | { readonly [k: string]: TensorContainer }
  | undefined;

/**
 * Runs `fn` and disposes every tensor created inside it except those it returns (a tensor, or
 * arrays/objects of tensors, searched recursively) and those passed to `keep`. `fn` must be
 * synchronous. Returned tensors belong to the enclosing scope.
 *
 * @example
 * const x = lr.tensor([1, 2, 3]);
 * const y = lr.tidy(() => x.exp().sum()); // x.exp() is disposed, y is kept
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new Error(
      'tidy: fn must be synchronous (it returned a Promise); dispose tensors manually in async code',
    );
  }
  const kept = new Set<Tensor>();
  collectTensors(result, kept, 0);
  for (const t of scope) {
    if (kept.has(t)) trackTensor(t);
    else t.dispose();
  }
  return result;
}

function collectTensors(value: unknown, out: Set<Tensor>, depth: number): void {
  if (depth > 8 || value === null || typeof value !== 'object') return;
  if (isTensor(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
  }
}

let tensorClass: (abstract new (...args: never[]) => Tensor) | null = null;
export function setTensorClass(cls: abstract new (...args: never[]) => Tensor): void {
  tensorClass = cls;
}
function isTensor(v: unknown): v is Tensor {
  return tensorClass !== null && v instanceof tensorClass;
}

// ---------------------------------------------------------------------------------------------
// Autograd hook: the autograd package installs itself here. The tensor package only reports
// which op made which tensor from which inputs; it knows nothing of graphs or gradients.

/**
 * The interface the autograd package implements and installs with `setAutogradHooks`; the tensor
 * package calls it at op dispatch and from `Tensor.backward()`.
 */
export interface AutogradHooks {
  /** Called after an op ran; `attrs` are the op's parameters (typed per op in ops/attrs.ts). */
  recordOp(op: string, inputs: readonly Tensor[], output: Tensor, attrs: object): void;
  /** Implements `tensor.backward()`. */
  backward(t: Tensor, gradient: Tensor | undefined, options: { retainGraph?: boolean }): void;
  /** Whether ops are being recorded right now (false inside noGrad). */
  isGradEnabled(): boolean;
  /** Runs fn with recording off. */
  noGrad<T>(fn: () => T): T;
  /** Called when a tensor with a `gradFn` is disposed, so the graph behind it can be released. */
  onDispose?(t: Tensor): void;
}

let hooks: AutogradHooks | null = null;
let recordingPaused = 0;

/**
 * Installs (or, with null, removes) the autograd implementation. Importing `@lowrank/autograd`
 * (or `lowrank`) does this once.
 *
 * @example
 * const hooks = lr.getAutogradHooks();
 * lr.setAutogradHooks(null); // ops are no longer recorded
 * lr.setAutogradHooks(hooks);
 */
export function setAutogradHooks(h: AutogradHooks | null): void {
  hooks = h;
}

/**
 * The installed autograd implementation, or null when none is.
 *
 * @example
 * lr.getAutogradHooks()?.isGradEnabled(); // true
 */
export function getAutogradHooks(): AutogradHooks | null {
  return hooks;
}

/**
 * Runs an op: checks its inputs are live and on one device, runs `compute` with recording paused
 * (so the ops it is built from are not recorded separately), then records the op once.
 *
 * @example
 * // an op built from recorded ops, recorded once under its own name (attrs typed in OpAttrs)
 * const out = lr.runOp('square', [x], {}, () => lr.mul(x, x));
 */
export function runOp(op: string, inputs: readonly Tensor[], attrs: object, compute: () => Tensor): Tensor {
  checkInputs(op, inputs);
  if (!hooks) return compute();
  recordingPaused++;
  let out: Tensor;
  try {
    out = compute();
  } finally {
    recordingPaused--;
  }
  if (recordingPaused === 0) hooks.recordOp(op, inputs, out, attrs);
  return out;
}

/**
 * Runs `fn` with op recording paused (used for work that must not enter the graph).
 *
 * @example
 * const y = lr.withoutRecording(() => w.mul(2)); // not part of any graph
 */
export function withoutRecording<T>(fn: () => T): T {
  recordingPaused++;
  try {
    return fn();
  } finally {
    recordingPaused--;
  }
}

export function checkInputs(op: string, inputs: readonly Tensor[]): void {
  let device: Device | undefined;
  for (const t of inputs) {
    t.assertLive(op);
    if (device === undefined) device = t.device;
    else if (t.device !== device) {
      throw new OpError(op, `expected all tensors on the same device, got '${device}' and '${t.device}'`);
    }
  }
}
