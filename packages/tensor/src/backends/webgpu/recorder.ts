import type { BufferPool } from './buffer-pool.js';
import type { DeviceErrors } from './device-errors.js';
import type { Binding, Pipelines, UniformChunk } from './pipelines.js';
import type { Profiler } from './profiler.js';

/**
 * Batched command recording: one encoder and one compute pass per batch (submitted on read-back
 * or at a size threshold), per-dispatch parameters in a uniform arena, and dispatches that skip
 * the setPipeline / setBindGroup calls that change nothing within a pass.
 */

const UNIFORM_USAGE = 0x40 | 0x08; // UNIFORM | COPY_DST

/** Dispatches recorded before a batch is submitted without waiting for a read-back. */
const BATCH_DISPATCHES = 96;
/** Size of one uniform arena chunk (≤ the default maxUniformBufferBindingSize). */
const ARENA_BYTES = 64 * 1024;

interface ArenaChunk extends UniformChunk {
  cpu: Uint32Array;
  used: number; // bytes
}

export class Recorder {
  /** What the open pass has set (to skip redundant setPipeline / setBindGroup calls). */
  private boundPass: GPUComputePassEncoder | null = null;
  private boundPipeline: GPUComputePipeline | null = null;
  private readonly bound: (GPUBindGroup | null)[] = [];
  /** Reused per dispatch: the dynamic offset of the meta binding. */
  private readonly dynamicOffset = new Uint32Array(1);

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;

  private arenaFree: ArenaChunk[] = [];
  private arenaUsed: ArenaChunk[] = [];
  private arena: ArenaChunk | null = null;

  constructor(
    private readonly device: GPUDevice,
    private readonly stats: { submits: number; dispatches: number },
    private readonly errors: DeviceErrors,
    private readonly pipelines: Pipelines,
    private readonly pool: BufferPool,
    private readonly profiler: Profiler,
  ) {}

  /** Whether a batch is open (recorded work not submitted yet). */
  get isOpen(): boolean {
    return this.dispatches > 0 || this.encoder !== null;
  }

  /** Copies `words` into the uniform arena; returns their offset there (the chunk is `this.arena`). */
  private meta(words: Uint32Array, bytes: number): number {
    const align = Math.max(256, this.device.limits.minUniformBufferOffsetAlignment);
    if (bytes > ARENA_BYTES) throw new Error(`webgpu: kernel parameters too large (${bytes} bytes)`);
    let chunk = this.arena;
    if (!chunk || Math.ceil(chunk.used / align) * align + bytes > ARENA_BYTES) {
      if (chunk) this.arenaUsed.push(chunk);
      chunk = this.arenaFree.pop() ?? {
        id: this.pipelines.nextId(),
        gpu: this.device.createBuffer({ size: ARENA_BYTES, usage: UNIFORM_USAGE }),
        cpu: new Uint32Array(ARENA_BYTES / 4),
        used: 0,
      };
      chunk.used = 0;
      this.arena = chunk;
    }
    const offset = Math.ceil(chunk.used / align) * align;
    chunk.cpu.set(words, offset / 4);
    chunk.used = offset + bytes;
    return offset;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.errors.openScope();
      this.encoder ??= this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  /**
   * Records one dispatch: binding 0 is the uniform `meta` words, bindings 1… the storage buffers.
   * `invocations` threads in workgroups of `wgSize` (spread over x and y beyond 65535 groups), or
   * explicit `groups`.
   */
  dispatch(
    pipeline: GPUComputePipeline,
    meta: Uint32Array,
    buffers: readonly Binding[],
    groups: readonly [number, number, number],
  ): void {
    const info = this.pipelines.info(pipeline);
    if (!info) throw new Error('webgpu: dispatch of a pipeline not made by this context');
    const metaBytes = Math.max(16, Math.ceil((meta.length * 4) / 16) * 16);
    this.dynamicOffset[0] = this.meta(meta, metaBytes);
    const chunk = this.arena as ArenaChunk;
    const split = info.split;
    const bindGroup = split
      ? this.pipelines.singleGroup(split[0], `u${chunk.id}`, chunk.gpu, metaBytes)
      : this.pipelines.bindGroup(info, chunk, metaBytes, buffers);
    const timestampWrites = this.profiler.kernelWrites(info.key);
    if (timestampWrites) this.pass = this.copyEncoder().beginComputePass({ timestampWrites });
    const pass = this.computePass();
    const bound = this.bound;
    if (this.boundPass !== pass) {
      // a new pass starts with nothing set
      this.boundPass = pass;
      this.boundPipeline = null;
      bound.fill(null);
    }
    if (this.boundPipeline !== pipeline) {
      pass.setPipeline(pipeline);
      this.boundPipeline = pipeline;
    }
    pass.setBindGroup(0, bindGroup, this.dynamicOffset, 0, 1);
    bound[0] = null;
    if (split) {
      // groups set by earlier dispatches of the pass stay set: skip the calls that change nothing
      for (let i = 0; i < buffers.length; i++) {
        const b = buffers[i];
        const group = this.pipelines.singleGroup(split[i + 1], info.tags[i + 1], b.buffer, b.size);
        if (bound[i + 1] !== group) {
          pass.setBindGroup(i + 1, group);
          bound[i + 1] = group;
        }
      }
    }
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    if (timestampWrites) {
      pass.end();
      this.pass = null;
    }
    this.dispatches++;
    this.stats.dispatches++;
    if (this.dispatches >= BATCH_DISPATCHES) this.submit();
  }

  /** Grid for `count` workgroups: x ≤ 65535, the rest in y. */
  grid(count: number): [number, number, number] {
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (count <= max) return [Math.max(1, count), 1, 1];
    const y = Math.ceil(count / max);
    if (y > max) throw new Error(`webgpu: ${count} workgroups exceed the grid limit`);
    return [max, y, 1];
  }

  /** The open encoder with its compute pass ended (for copies). */
  copyEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.errors.openScope();
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  /** Submits the open batch (parameters first), then pools the buffers freed meanwhile. */
  submit(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (this.arena) {
      this.arenaUsed.push(this.arena);
      this.arena = null;
    }
    for (const chunk of this.arenaUsed) {
      if (chunk.used > 0) this.device.queue.writeBuffer(chunk.gpu, 0, chunk.cpu.buffer, 0, chunk.used);
    }
    if (this.encoder) {
      this.device.queue.submit([this.encoder.finish()]);
      this.stats.submits++;
      this.encoder = null;
    }
    // the queue orders later writes after this submit: the chunks and buffers can be reused now
    this.arenaFree.push(...this.arenaUsed);
    this.arenaUsed = [];
    this.dispatches = 0;
    this.pool.submitted();
    this.errors.closeScope();
  }
}
