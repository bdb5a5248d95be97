import type { Backend, KernelTable } from '../../backend.js';
import { adapterName, describeAdapter } from '../../device-rule.js';
import type { DType, TypedArray } from '../../dtype.js';
import {
  forgetDevice,
  getDefaultDevice,
  registerBackend,
  registerKernels,
  setDefaultDevice,
  unregisterBackend,
} from '../../engine.js';
import type { Storage } from '../../storage.js';
import { acquireGPU } from './acquire.js';
import { attention } from './attention.js';
import { attentionBackward } from './attention-backward.js';
import { ELEMENT_BYTES, WebGPUContext } from './context.js';
import { crossEntropyRows } from './cross-entropy.js';
import { elementwise } from './elementwise.js';
import { gather, indexAdd, indexSelect, scatterAdd } from './indexing.js';
import { matmul, matmulEpilogue } from './matmul.js';
import { loraMatmul, skinnyMatmul } from './matmul-skinny.js';
import { norm, normBackward, normParamGrad } from './norm.js';
import { adamUpdate } from './optim.js';
import { dequantize, quantize, quantMatmul } from './quant.js';
import { reduce } from './reduce.js';
import { softmax } from './softmax.js';
import { currentContext, setContext } from './state.js';

/** Options for the WebGPU backend. */
export interface WebGPUInitOptions {
  powerPreference?: 'low-power' | 'high-performance';
  /** A device to use instead of discovering one (its limits are used as they are). */
  device?: GPUDevice;
  /** A GPU object to request the adapter from (instead of navigator.gpu / the webgpu package). */
  gpu?: GPU;
}

/** The WebGPU kernels bound to the context they run on. */
function kernelsOf(c: WebGPUContext): KernelTable {
  return {
    elementwise: (program, dst) => elementwise(c, program, dst),
    reduce: (op, x, outer, inner, outDtype) => reduce(c, op, x, outer, inner, outDtype),
    softmax: (x, rows, cols) => softmax(c, x, rows, cols),
    norm: (kind, x, rows, cols, weight, bias, eps, stats) =>
      norm(c, kind, x, rows, cols, weight, bias, eps, stats),
    normBackward: (kind, x, grad, rows, cols, weight, mean, rstd) =>
      normBackward(c, kind, x, grad, rows, cols, weight, mean, rstd),
    normParamGrad: (kind, x, grad, rows, cols, mean, rstd, bias) =>
      normParamGrad(c, kind, x, grad, rows, cols, mean, rstd, bias),
    crossEntropyRows: (x, labels, rows, cols, params) => crossEntropyRows(c, x, labels, rows, cols, params),
    // LoRA's skinny shapes (one of M, N, K ≤ 64) first; null hands the rest to the general kernel
    matmul: (a, b, batch, m, k, n) =>
      skinnyMatmul(c, a, b, batch, m, k, n) ?? matmul(c, a, b, batch, m, k, n),
    loraMatmul: (a, w, index, residual, alpha, batch, m, k, n) =>
      loraMatmul(c, a, w, index, residual, alpha, batch, m, k, n),
    matmulEpilogue: (a, b, batch, m, k, n, epi) => matmulEpilogue(c, a, b, batch, m, k, n, epi),
    attention: (q, k, v, mask, params) => attention(c, q, k, v, mask, params),
    attentionBackward: (q, k, v, mask, out, grad, lse, params) =>
      attentionBackward(c, q, k, v, mask, out, grad, lse, params),
    gather: (x, dim, index) => gather(c, x, dim, index),
    indexSelect: (x, dim, index) => indexSelect(c, x, dim, index),
    scatterAdd: (target, dim, index, src) => scatterAdd(c, target, dim, index, src),
    indexAdd: (target, dim, index, src) => indexAdd(c, target, dim, index, src),
    adamUpdate: (param, grad, expAvg, expAvgSq, maxExpAvgSq, s) =>
      adamUpdate(c, param, grad, expAvg, expAvgSq, maxExpAvgSq, s),
    quantMatmul: (a, w, m, transpose) => quantMatmul(c, a, w, m, transpose),
    dequantize: (w) => dequantize(c, w),
    quantize: (w, format, rows, cols, blockSize, scaleMean) =>
      quantize(c, w, format, rows, cols, blockSize, scaleMean),
  };
}

const OPTIONAL_FEATURES = ['subgroups', 'timestamp-query'] as const;

/** Requests the adapter `createWebGPUBackend` would open a device on (null when there is none). */
export async function requestWebGPUAdapter(options: WebGPUInitOptions): Promise<GPUAdapter | null> {
  const gpu = options.gpu ?? (await acquireGPU());
  return gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
}

async function openDevice(
  options: WebGPUInitOptions,
  found?: GPUAdapter,
): Promise<{ device: GPUDevice; description: string }> {
  if (options.device) return { device: options.device, description: 'WebGPU (given device)' };
  const adapter = found ?? (await requestWebGPUAdapter(options));
  if (!adapter) throw new Error('no WebGPU adapter was found');
  const lim = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
    maxBufferSize: lim.maxBufferSize,
    maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: lim.maxComputeWorkgroupSizeX,
    maxStorageBuffersPerShaderStage: lim.maxStorageBuffersPerShaderStage,
  };
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  // said, not silent: which kernels take the subgroup path (attention-shared.ts rowSubgroups)
  const lanes = device.features.has('subgroups') ? device.adapterInfo?.subgroupMinSize : undefined;
  const sub = lanes ? `; subgroups of ${lanes}+ lanes: the attention forward's row reductions` : '';
  return { device, description: `WebGPU (${adapterName(describeAdapter(adapter))}${sub})` };
}

function createBackend(c: WebGPUContext): Backend {
  return {
    device: 'webgpu',
    description: c.description,
    maxStorageBytes: c.maxStorageBytes,
    // one binding is the output; the rest may be inputs of a fused kernel
    maxFusedInputs: Math.max(2, c.limits.maxStorageBuffersPerShaderStage - 1),
    storageBytes: (_dtype, size) => size * ELEMENT_BYTES,
    checkStorageBytes: (op, bytes) => c.checkSize(op, bytes),
    allocate: (dtype, size) => c.allocate('tensor', dtype, size),
    upload(data: TypedArray, dtype: DType): Storage {
      if (dtype === 'bool') {
        const words = new Uint32Array(data.length);
        for (let i = 0; i < data.length; i++) words[i] = data[i] ? 1 : 0;
        return c.upload('tensor', words, dtype, data.length);
      }
      return c.upload('tensor', data, dtype, data.length);
    },
    async read(storage: Storage): Promise<TypedArray> {
      const bytes = await c.read(storage.handle as GPUBuffer, storage.size * ELEMENT_BYTES);
      switch (storage.dtype) {
        case 'float32':
          return new Float32Array(bytes);
        case 'int32':
          return new Int32Array(bytes);
        case 'bool': {
          const words = new Uint32Array(bytes);
          const out = new Uint8Array(words.length);
          for (let i = 0; i < words.length; i++) out[i] = words[i] ? 1 : 0;
          return out;
        }
      }
    },
    release(storage: Storage): void {
      if (storage.handle) c.release(storage.handle as GPUBuffer);
      storage.handle = null;
    },
    reserve(bytes: number) {
      // a pooled buffer held by the capture: its storages bind the same buffer every replay, so
      // their bind groups stay cached
      const buffer = c.scratch('compile', Math.ceil(bytes / ELEMENT_BYTES));
      return { bytes: buffer.size, view: () => buffer, free: () => c.release(buffer) };
    },
    flush(): Promise<void> {
      return c.sync();
    },
  };
}

/** Creates and registers the WebGPU backend (device 'webgpu'), on `adapter` when one was requested already. */
export async function createWebGPUBackend(options: WebGPUInitOptions, adapter?: GPUAdapter): Promise<void> {
  const live = currentContext();
  if (live && !live.isDestroyed) return;
  const { device, description } = await openDevice(options, adapter);
  const c = new WebGPUContext(device, description);
  setContext(c);
  registerBackend(createBackend(c));
  registerKernels('webgpu', kernelsOf(c));
}

/**
 * Destroys the WebGPU device (a live Dawn device keeps a CPU core busy and the process alive) and
 * unregisters the backend. Tensors on 'webgpu' lose their memory: `memory()` stops counting
 * them, and any op or read on one throws "this tensor belongs to a WebGPU device that was
 * destroyed", also after `init` creates a new device (disposing them still works).
 *
 * @example
 * const t = lr.ones([2], { device: 'webgpu' });
 * lr.destroyWebGPU();
 * lr.memory().devices.webgpu?.tensors; // 0
 * await t.data(); // throws: data: this tensor belongs to a WebGPU device that was destroyed …
 */
export function destroyWebGPU(): void {
  const c = currentContext();
  if (!c) return;
  c.destroy();
  forgetDevice('webgpu');
  setContext(null);
  unregisterBackend('webgpu');
  if (getDefaultDevice() === 'webgpu') setDefaultDevice('cpu');
}

/** The GPUDevice in use (null before init): for interop, e.g. benchmarks on the same device. */
export function webgpuDevice(): GPUDevice | null {
  return currentContext()?.device ?? null;
}

/** Counters of the live context (buffers and pipelines created, submits, dispatches) for tests. */
export function webgpuStats(): WebGPUContext['stats'] | null {
  return currentContext()?.stats ?? null;
}

/** What `webgpuProfiler` returns: GPU timestamps and peak-memory reset, for benchmarks. */
export interface WebGPUProfiler {
  /** Marks the GPU timeline once the work queued so far has run; the mark's index, or -1 without 'timestamp-query'. */
  timestamp(): number;
  /** Nanoseconds of the marks since the last call, in order (waits for the GPU). */
  readTimestamps(): Promise<number[]>;
  /** Starts or stops timing every dispatch on the GPU (one timestamped pass each; slows recording). */
  profileKernels(on: boolean): void;
  /** GPU nanoseconds and dispatch counts per kernel (pipeline key) since profiling started; clears them. */
  readKernelProfile(): Promise<
    Map<
      string,
      {
        /** Dispatches of this kernel. */
        count: number;
        /** Their GPU time in nanoseconds. */
        ns: number;
      }
    >
  >;
  /** Restarts `webgpuStats()`'s peakBytesInUse / peakBytesReserved from the current counts. */
  resetPeakBytes(): void;
}

/**
 * Profiling hooks of the live context (null before init).
 *
 * @example
 * const p = lr.webgpuProfiler()!;
 * p.timestamp();
 * model.forward(x);
 * p.timestamp();
 * const [t0, t1] = await p.readTimestamps(); // (t1 - t0) / 1e6 ms on the GPU
 */
export function webgpuProfiler(): WebGPUProfiler | null {
  const c = currentContext();
  if (!c) return null;
  return {
    timestamp: () => c.timestamp(),
    readTimestamps: () => c.readTimestamps(),
    resetPeakBytes: () => c.resetPeakBytes(),
    profileKernels: (on) => c.profileKernels(on),
    readKernelProfile: () => c.readKernelProfile(),
  };
}

export { MATMUL_CONFIGS, type MatmulConfig, setMatmulConfig } from './matmul.js';
export { setSkinnyMatmul } from './matmul-skinny.js';
