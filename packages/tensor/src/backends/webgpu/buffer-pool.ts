import type { DType } from '../../dtype.js';
import { reportScratch } from '../../engine/capture.js';
import { releaseScratch, scratchHandle, slotHandle } from '../../engine/slots.js';
import { newStorage } from '../../engine.js';
import { OpError } from '../../errors.js';
import type { Storage } from '../../storage.js';
import type { DeviceErrors } from './device-errors.js';
import type { Pipelines } from './pipelines.js';

/**
 * GPU memory: storage buffers pooled by size class (with the frees pending while a batch is open
 * and the destroys deferred past its submit), the byte counters of `stats`, uploads, and the
 * pool of staging buffers for read-backs.
 */

/** Every tensor element takes 4 bytes on the GPU (bool is a u32 0/1). */
export const ELEMENT_BYTES = 4;

export const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
const READBACK_USAGE = 0x01 | 0x08; // MAP_READ | COPY_DST

/** Bytes freed while a batch is open that force its submit (so they can be reused). */
const PENDING_FREE_SUBMIT_BYTES = 256 * 1024 * 1024;
/**
 * Free bytes the buffer pool keeps before it destroys returned buffers: this, or the peak bytes
 * in use if larger (a training step frees most of its peak at its end and needs it again at the
 * next one; destroying and re-creating those buffers cost ~1 s per GPT-2 step in Dawn).
 */
const POOL_MAX_FREE_BYTES = 2 * 1024 * 1024 * 1024;

/** Rounds a byte size up to its pool size class (≤ 12.5% waste above 64 KiB, powers of two below). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 65536) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

/** The counters of the context's `stats` that the pool keeps. */
export interface PoolStats {
  buffersCreated: number;
  buffersAcquired: number;
  bytesInUse: number;
  peakBytesInUse: number;
  bytesReserved: number;
  peakBytesReserved: number;
}

export class BufferPool {
  private readonly pool = new Map<number, GPUBuffer[]>();
  private poolFreeBytes = 0;
  /**
   * Pooled buffers released while the open batch may still use them: kernels recorded after the
   * release may take them (commands run in recording order), but not uploads (queue writes run
   * before the batch) and they are not destroyed before its submit. Reuse does not wait for the
   * submit, so a step that allocates and frees in the same order gets the same buffers every
   * time, wherever the batch boundaries fall, and finds its bind groups cached.
   */
  private readonly pending = new Set<GPUBuffer>();
  private pendingFreeBytes = 0;
  /** Pending buffers evicted from the pool: destroyed after the submit. */
  private deferredDestroy: GPUBuffer[] = [];
  private readonly stagingPool = new Map<number, GPUBuffer[]>();
  /**
   * The most bytes ever in use at once. The pool's cap follows it rather than the resettable
   * peak of `stats`: after `resetPeakBytes()` (benchmarks reset it between phases) a cap of the
   * new, lower peak evicted what the next step needed again — 7.8 buffers re-created per
   * compiled GPT-2 LoRA step on the H200.
   */
  private highWater = 0;

  constructor(
    private readonly device: GPUDevice,
    /** Largest tensor in bytes: the smaller of maxStorageBufferBindingSize and maxBufferSize. */
    private readonly maxStorageBytes: number,
    private readonly stats: PoolStats,
    private readonly errors: DeviceErrors,
    private readonly pipelines: Pipelines,
  ) {}

  checkSize(op: string, bytes: number): void {
    if (bytes > this.maxStorageBytes) {
      throw new OpError(
        op,
        `a tensor of ${bytes} bytes exceeds this GPU's largest storage binding (${this.maxStorageBytes} bytes: ` +
          'maxStorageBufferBindingSize / maxBufferSize)',
      );
    }
  }

  /** A buffer for `bytes`: the last one freed of its size class (for uploads, one not pending). */
  private acquireBuffer(op: string, bytes: number, forUpload: boolean): GPUBuffer {
    this.checkSize(op, bytes);
    this.stats.buffersAcquired++;
    const cls = Math.min(sizeClass(bytes), Math.max(16, Math.ceil(this.maxStorageBytes / 4) * 4));
    const free = this.pool.get(cls);
    let reused: GPUBuffer | undefined;
    if (free && free.length > 0) {
      if (!forUpload || this.pending.size === 0) reused = free.pop();
      else {
        for (let i = free.length - 1; i >= 0; i--) {
          if (!this.pending.has(free[i])) {
            reused = free[i];
            free.splice(i, 1);
            break;
          }
        }
      }
    }
    if (reused) {
      this.poolFreeBytes -= cls;
      this.countInUse(reused.size);
      return reused;
    }
    this.errors.openScope();
    this.stats.buffersCreated++;
    const buffer = this.device.createBuffer({
      size: Math.max(cls, Math.ceil(bytes / 4) * 4, 16),
      usage: STORAGE_USAGE,
    });
    const s = this.stats;
    s.bytesReserved += buffer.size;
    if (s.bytesReserved > s.peakBytesReserved) s.peakBytesReserved = s.bytesReserved;
    this.countInUse(buffer.size);
    return buffer;
  }

  private countInUse(bytes: number): void {
    const s = this.stats;
    s.bytesInUse += bytes;
    if (s.bytesInUse > s.peakBytesInUse) s.peakBytesInUse = s.bytesInUse;
    if (s.bytesInUse > this.highWater) this.highWater = s.bytesInUse;
  }

  private destroyPooled(buffer: GPUBuffer): void {
    this.stats.bytesReserved -= buffer.size;
    this.pipelines.forgetBindGroups(buffer);
    if (this.pending.has(buffer)) this.deferredDestroy.push(buffer);
    else buffer.destroy();
  }

  /** Restarts the peaks of `stats` from the current byte counts. */
  resetPeakBytes(): void {
    this.stats.peakBytesInUse = this.stats.bytesInUse;
    this.stats.peakBytesReserved = this.stats.bytesReserved;
  }

  /** A pooled buffer for `size` elements that no tensor owns (a kernel's scratch; see release). */
  scratch(op: string, size: number): GPUBuffer {
    const bytes = Math.max(1, size) * ELEMENT_BYTES;
    // a replay of a captured step: the memory plan's slot for this scratch, when it has one
    const slot = scratchHandle('webgpu', bytes);
    if (slot) return slot as GPUBuffer;
    reportScratch('webgpu', bytes);
    return this.acquireBuffer(op, bytes, false);
  }

  /** A new storage of `size` elements (contents undefined until a kernel writes them). */
  allocate(op: string, dtype: DType, size: number): Storage<GPUBuffer> {
    const bytes = size * ELEMENT_BYTES;
    // a replay of a captured step: the memory plan's slot for this value, when it has one
    const slot = slotHandle('webgpu', dtype, size, bytes, false);
    if (slot) return newStorage('webgpu', dtype, size, bytes, slot as GPUBuffer);
    const buffer = this.acquireBuffer(op, bytes, false);
    return newStorage('webgpu', dtype, size, bytes, buffer);
  }

  /**
   * Returns a storage's buffer to the pool, pending until the next submit if a batch is open.
   * True when the pending frees have grown enough that the caller should submit the batch.
   */
  release(buffer: GPUBuffer, batchOpen: boolean): boolean {
    if (this.errors.destroyed) return false;
    if (releaseScratch(buffer)) return false; // scratch in a memory-plan slot: the capture keeps it
    this.stats.bytesInUse -= buffer.size;
    if (batchOpen) {
      this.pending.add(buffer);
      this.pendingFreeBytes += buffer.size;
      this.toPool(buffer);
      return this.pendingFreeBytes >= PENDING_FREE_SUBMIT_BYTES;
    }
    this.toPool(buffer);
    return false;
  }

  private toPool(buffer: GPUBuffer): void {
    const cap = Math.max(POOL_MAX_FREE_BYTES, this.highWater);
    if (buffer.size > cap) {
      this.destroyPooled(buffer);
      return;
    }
    // over the cap: evict buffers of other size classes (largest first), never the one being reused
    if (this.poolFreeBytes + buffer.size > cap) {
      const classes = [...this.pool.keys()].filter((k) => k !== buffer.size).sort((x, y) => y - x);
      for (const cls of classes) {
        const list = this.pool.get(cls) ?? [];
        while (list.length > 0 && this.poolFreeBytes + buffer.size > cap) {
          const b = list.pop();
          if (b) this.destroyPooled(b);
          this.poolFreeBytes -= cls;
        }
        if (this.poolFreeBytes + buffer.size <= cap) break;
      }
      if (this.poolFreeBytes + buffer.size > cap) {
        this.destroyPooled(buffer);
        return;
      }
    }
    let list = this.pool.get(buffer.size);
    if (!list) {
      list = [];
      this.pool.set(buffer.size, list);
    }
    list.push(buffer);
    this.poolFreeBytes += buffer.size;
  }

  /** The batch was submitted: pending buffers are plain pooled ones now, deferred ones go. */
  submitted(): void {
    this.pending.clear();
    this.pendingFreeBytes = 0;
    const doomed = this.deferredDestroy;
    this.deferredDestroy = [];
    for (const b of doomed) b.destroy();
  }

  /** Destroys every pooled buffer (memory held for reuse goes back to the driver). */
  emptyPool(): void {
    this.pipelines.forgetAllBindGroups();
    for (const list of this.pool.values()) for (const b of list) this.destroyPooled(b);
    this.pool.clear();
    this.poolFreeBytes = 0;
    this.highWater = this.stats.bytesInUse; // memory given back on purpose: the cap starts over
  }

  upload(op: string, data: ArrayBufferView, dtype: DType, size: number): Storage<GPUBuffer> {
    this.errors.check(op);
    const bytes = size * ELEMENT_BYTES;
    const storage = newStorage('webgpu', dtype, size, bytes, this.acquireBuffer(op, bytes, true));
    if (size > 0) {
      this.errors.openScope();
      this.device.queue.writeBuffer(storage.handle, 0, data.buffer, data.byteOffset, size * ELEMENT_BYTES);
    }
    return storage;
  }

  /** A mappable buffer of at least `bytes` to copy a read-back into. */
  staging(bytes: number): GPUBuffer {
    const cls = sizeClass(bytes);
    return this.stagingPool.get(cls)?.pop() ?? this.device.createBuffer({ size: cls, usage: READBACK_USAGE });
  }

  /** Takes back a staging buffer, unmapped (keeps 4 per size class). */
  returnStaging(b: GPUBuffer): void {
    let list = this.stagingPool.get(b.size);
    if (!list) {
      list = [];
      this.stagingPool.set(b.size, list);
    }
    if (list.length < 4) list.push(b);
    else b.destroy();
  }

  /** Forgets the pooled buffers without destroying them (the device is being destroyed). */
  clear(): void {
    this.pool.clear();
    this.stagingPool.clear();
  }
}
