import type { Backend, KernelName, KernelTable } from '../backend.js';
import { OpError } from '../errors.js';
import type { Device } from '../storage.js';
import { activeTrace } from './capture.js';

/**
 * The registry: backends and their kernels by device, and the default device. Ops find their
 * kernels here (`getKernel`); nothing else in the tensor package is global except the memory
 * counters (memory.ts), tidy scopes (scopes.ts) and the autograd hook (dispatch.ts).
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

/** The backend of `device`, or undefined (after destroyWebGPU, say). */
export function backendIfAny(device: Device): Backend | undefined {
  return backends.get(device);
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
  const trace = b && activeTrace();
  if (trace) return trace.backend(b);
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
  const trace = activeTrace();
  return trace ? trace.kernel(device, name, k) : k;
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
