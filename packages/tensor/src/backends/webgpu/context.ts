import type { DType } from '../../dtype.js';
import { OpError } from '../../errors.js';
import type { Storage } from '../../storage.js';
import { labelMessage } from '../cpu/cross-entropy.js';
import { BufferPool, STORAGE_USAGE } from './buffer-pool.js';
import { DeviceErrors } from './device-errors.js';
import { type Binding, Pipelines } from './pipelines.js';
import { Profiler } from './profiler.js';
import { Recorder } from './recorder.js';

/**
 * The device-side machinery of the WebGPU backend, one facade over its parts: pipelines and bind
 * groups (pipelines.ts), the buffer pool by size class (buffer-pool.ts), batched command recording
 * with a uniform arena (recorder.ts), GPU timing (profiler.ts), and error plumbing — error scopes
 * and device loss (device-errors.ts), plus here an error-flag buffer for out-of-range indices
 * that every read-back collects.
 */

export { ELEMENT_BYTES, sizeClass } from './buffer-pool.js';
export { type Binding, layoutEntries } from './pipelines.js';

const MAP_READ = 0x1;

/**
 * Ops that report out-of-range indices through the error-flag buffer (code = position + 1);
 * `crossEntropyRows` reports a label out of [0, classes) that is not ignoreIndex.
 */
export const INDEX_OPS = [
  'gather',
  'indexSelect',
  'scatterAdd',
  'indexAdd',
  'loraMatmul',
  'crossEntropyRows',
] as const;
export type IndexOp = (typeof INDEX_OPS)[number];

export class WebGPUContext {
  readonly device: GPUDevice;
  readonly queue: GPUQueue;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly description: string;
  /** What the device's adapter says about itself (`GPUDevice.adapterInfo`; undefined where the implementation lacks it). */
  readonly adapterInfo: GPUAdapterInfo | undefined;
  /** Largest tensor in bytes: the smaller of maxStorageBufferBindingSize and maxBufferSize. */
  readonly maxStorageBytes: number;

  /** Out-of-range index reports: [count, op code, index value, dim size]. */
  readonly errorFlag: GPUBuffer;

  /**
   * Counters for tests and benchmarks. Bytes are whole GPU buffers (size classes): `bytesInUse`
   * held by live storages, `bytesReserved` also counting pooled and pending-free ones (PyTorch's
   * memory_allocated / memory_reserved); the peaks since `resetPeakBytes()`.
   */
  readonly stats = {
    buffersCreated: 0,
    /** Storage buffers handed out by the pool (reused or created; a replay's planned values take none). */
    buffersAcquired: 0,
    pipelinesCreated: 0,
    submits: 0,
    dispatches: 0,
    bytesInUse: 0,
    peakBytesInUse: 0,
    bytesReserved: 0,
    peakBytesReserved: 0,
  };

  private readonly errors: DeviceErrors;
  private readonly pipelines: Pipelines;
  private readonly pool: BufferPool;
  private readonly profiler: Profiler;
  private readonly recorder: Recorder;

  constructor(device: GPUDevice, description: string) {
    this.device = device;
    this.queue = device.queue;
    this.limits = device.limits;
    this.features = new Set(device.features as unknown as Iterable<string>);
    this.description = description;
    this.adapterInfo = (device as Partial<Pick<GPUDevice, 'adapterInfo'>>).adapterInfo;
    this.maxStorageBytes = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    this.errors = new DeviceErrors(device);
    this.pipelines = new Pipelines(device, this.stats);
    this.pool = new BufferPool(device, this.maxStorageBytes, this.stats, this.errors, this.pipelines);
    this.profiler = new Profiler(device, this.features, {
      copyEncoder: () => this.recorder.copyEncoder(),
      read: (buffer, bytes) => this.read(buffer, bytes),
    });
    this.recorder = new Recorder(device, this.stats, this.errors, this.pipelines, this.pool, this.profiler);
    this.errorFlag = device.createBuffer({ size: 16, usage: STORAGE_USAGE });
    device.queue.writeBuffer(this.errorFlag, 0, new Uint32Array(4));
  }

  // ---- errors

  /** Throws an error reported asynchronously since the last check (device loss, validation, OOM). */
  check(op = 'webgpu'): void {
    this.errors.check(op);
  }

  // ---- pipelines

  /** The compute pipeline for `key`, compiled from `code()` on first use. */
  pipeline(key: string, code: () => string): GPUComputePipeline {
    return this.pipelines.pipeline(key, code);
  }

  // ---- memory

  checkSize(op: string, bytes: number): void {
    this.pool.checkSize(op, bytes);
  }

  /** Restarts the peaks of `stats` from the current byte counts. */
  resetPeakBytes(): void {
    this.pool.resetPeakBytes();
  }

  /** A new storage of `size` elements (contents undefined until a kernel writes them). */
  allocate(op: string, dtype: DType, size: number): Storage<GPUBuffer> {
    return this.pool.allocate(op, dtype, size);
  }

  /**
   * A buffer of `size` elements for work inside one kernel call (partial sums, a copy that must
   * not alias its destination). It is not a storage: the engine never sees it, and the kernel
   * gives it back with `release` once its dispatches are recorded.
   */
  scratch(op: string, size: number): GPUBuffer {
    return this.pool.scratch(op, size);
  }

  /** Returns a storage's buffer to the pool (pending until the open batch is submitted, if any). */
  release(buffer: GPUBuffer): void {
    if (this.pool.release(buffer, this.recorder.isOpen)) this.recorder.submit();
  }

  /** Destroys every pooled buffer (memory held for reuse goes back to the driver). */
  emptyPool(): void {
    this.pool.emptyPool();
  }

  upload(op: string, data: ArrayBufferView, dtype: DType, size: number): Storage<GPUBuffer> {
    return this.pool.upload(op, data, dtype, size);
  }

  // ---- recording

  /**
   * Records one dispatch: binding 0 is the uniform `meta` words, bindings 1… the storage buffers,
   * in `groups` workgroups.
   */
  dispatch(
    pipeline: GPUComputePipeline,
    meta: Uint32Array,
    buffers: readonly Binding[],
    groups: readonly [number, number, number],
  ): void {
    this.recorder.dispatch(pipeline, meta, buffers, groups);
  }

  /** Grid for `count` workgroups: x ≤ 65535, the rest in y. */
  grid(count: number): [number, number, number] {
    return this.recorder.grid(count);
  }

  /** Submits the open batch (parameters first), then pools the buffers freed meanwhile. */
  submit(): void {
    this.recorder.submit();
  }

  /**
   * Reads `bytes` of `buffer` back to the host: submits the open batch with a copy to a staging
   * buffer (plus the index error flag, then cleared), waits for the map, and reports any error
   * the GPU work raised meanwhile.
   */
  async read(buffer: GPUBuffer, bytes: number, names: readonly string[] = INDEX_OPS): Promise<ArrayBuffer> {
    this.check('read');
    const padded = Math.ceil(bytes / 16) * 16;
    const staging = this.pool.staging(padded + 16);
    const enc = this.recorder.copyEncoder();
    if (bytes > 0) enc.copyBufferToBuffer(buffer, 0, staging, 0, Math.ceil(bytes / 4) * 4);
    enc.copyBufferToBuffer(this.errorFlag, 0, staging, padded, 16);
    enc.clearBuffer(this.errorFlag);
    this.recorder.submit();
    const scopes = this.errors.takeScopes();
    try {
      await staging.mapAsync(MAP_READ, 0, padded + 16);
    } catch (e) {
      this.check('read');
      throw new Error(`webgpu: read-back failed: ${(e as Error).message}`);
    }
    const mapped = staging.getMappedRange(0, padded + 16);
    const out = mapped.slice(0, bytes);
    const flag = new Uint32Array(mapped.slice(padded, padded + 16));
    staging.unmap();
    this.pool.returnStaging(staging);
    await Promise.all(scopes);
    this.check('read');
    if (flag[0] > 0) {
      const op = names[flag[1] - 1] ?? 'index';
      const value = flag[2] | 0;
      if (op === 'crossEntropyRows') throw new OpError(op, labelMessage(value, flag[3]));
      throw new OpError(op, `index ${value} is out of bounds for a dimension of size ${flag[3]}`);
    }
    return out;
  }

  // ---- GPU timestamps (benchmarks)

  /**
   * Records a GPU timestamp taken once the work recorded so far has run (an empty compute pass
   * whose end is timestamped); returns its index for `readTimestamps`, or -1 without the
   * 'timestamp-query' feature or beyond 256 marks.
   */
  timestamp(): number {
    return this.profiler.timestamp();
  }

  /** Starts (or stops) timing every dispatch on the GPU, one timestamped pass each (slows recording). */
  profileKernels(on: boolean): void {
    this.profiler.profileKernels(on);
  }

  /** GPU nanoseconds per pipeline key of the dispatches profiled so far (waits for the GPU); clears them. */
  readKernelProfile(): Promise<Map<string, { count: number; ns: number }>> {
    return this.profiler.readKernelProfile();
  }

  /** Nanoseconds of the marks recorded since the last call (waits for the GPU); clears them. */
  readTimestamps(): Promise<number[]> {
    return this.profiler.readTimestamps();
  }

  /** Submits queued work and waits for the GPU; reports asynchronous errors. */
  async sync(): Promise<void> {
    await this.read(this.errorFlag, 0);
  }

  destroy(): void {
    if (this.errors.destroyed) return;
    this.errors.markDestroyed();
    this.pipelines.clear();
    this.pool.clear();
    this.device.destroy();
  }

  get isDestroyed(): boolean {
    return this.errors.destroyed;
  }
}
