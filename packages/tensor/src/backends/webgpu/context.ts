import type { DType } from '../../dtype.js';
import { newStorage } from '../../engine.js';
import { OpError } from '../../errors.js';
import type { Storage } from '../../storage.js';

/**
 * The device-side machinery of the WebGPU backend: pipeline cache, buffer pool by size class,
 * batched command recording (one encoder and one compute pass per batch, submitted on read-back or
 * at a size threshold), per-dispatch parameters in a uniform arena, and error plumbing (error
 * scopes, device loss, an error-flag buffer for out-of-range indices).
 */

/** Every tensor element takes 4 bytes on the GPU (bool is a u32 0/1). */
export const ELEMENT_BYTES = 4;

const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
const UNIFORM_USAGE = 0x40 | 0x08; // UNIFORM | COPY_DST
const READBACK_USAGE = 0x01 | 0x08; // MAP_READ | COPY_DST
const MAP_READ = 0x1;

/** Dispatches recorded before a batch is submitted without waiting for a read-back. */
const BATCH_DISPATCHES = 96;
/** Size of one uniform arena chunk (≤ the default maxUniformBufferBindingSize). */
const ARENA_BYTES = 64 * 1024;
/** Bytes freed while a batch is open that force its submit (so they can be reused). */
const PENDING_FREE_SUBMIT_BYTES = 256 * 1024 * 1024;
/** Dispatches timed per query set, and at most, while kernels are profiled. */
const KPROF_PER_SET = 2048;
const KPROF_MAX = 16 * KPROF_PER_SET;
/**
 * Free bytes the buffer pool keeps before it destroys returned buffers: this, or the peak bytes
 * in use if larger (a training step frees most of its peak at its end and needs it again at the
 * next one; destroying and re-creating those buffers cost ~1 s per GPT-2 step in Dawn).
 */
const POOL_MAX_FREE_BYTES = 2 * 1024 * 1024 * 1024;

/** Ops that report out-of-range indices through the error-flag buffer (code = position + 1). */
export const INDEX_OPS = ['gather', 'indexSelect', 'scatterAdd', 'indexAdd'] as const;
export type IndexOp = (typeof INDEX_OPS)[number];

export interface Binding {
  buffer: GPUBuffer;
  /** Bytes bound (a multiple of 4, > 0). */
  size: number;
}

interface ArenaChunk {
  /** Identifies the chunk in bind-group cache keys. */
  id: number;
  gpu: GPUBuffer;
  cpu: Uint32Array;
  used: number; // bytes
}

/** Bind groups cached before the cache is emptied (bounds what it keeps alive). */
const BIND_GROUP_CACHE_MAX = 8192;

/** The explicit layout of a pipeline: binding 0 a uniform with a dynamic offset, then storages. */
interface PipelineInfo {
  /**
   * Bind-group layout of each binding when every binding has a group of its own (kernels with at
   * most maxBindGroups bindings): one cached bind group per buffer, hit whichever buffers a
   * dispatch combines. Null: all bindings in group 0, bind groups cached by their buffer tuple.
   */
  split: GPUBindGroupLayout[] | null;
  /** Binding types' tags ('u', 's', 'r') of the split groups. */
  tags: string[];
  layout: GPUBindGroupLayout;
  /** Identifies the layout in bind-group cache keys. */
  layoutId: number;
  key: string;
}

const BINDING_DECL =
  /@group\(0\)\s*@binding\((\d+)\)\s*var<\s*(uniform|storage(?:\s*,\s*(read_write|read))?)\s*>/g;

/**
 * The bind-group layout entries of a kernel's group 0, read from its WGSL declarations (the same
 * layout 'auto' derives, except that the uniform `meta` binding takes a dynamic offset).
 */
export function layoutEntries(code: string): GPUBindGroupLayoutEntry[] {
  const entries: GPUBindGroupLayoutEntry[] = [];
  for (const m of code.matchAll(BINDING_DECL)) {
    const binding = Number(m[1]);
    const type: GPUBufferBindingType =
      m[2] === 'uniform' ? 'uniform' : m[3] === 'read' ? 'read-only-storage' : 'storage';
    entries.push({
      binding,
      visibility: 0x4, // COMPUTE
      buffer: { type, hasDynamicOffset: type === 'uniform' },
    });
  }
  return entries.sort((a, b) => a.binding - b.binding);
}

const TYPE_TAG: Record<GPUBufferBindingType, string> = {
  uniform: 'u',
  storage: 's',
  'read-only-storage': 'r',
};

/** Rounds a byte size up to its pool size class (≤ 12.5% waste above 64 KiB, powers of two below). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 65536) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

export class WebGPUContext {
  readonly device: GPUDevice;
  readonly queue: GPUQueue;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly description: string;
  /** Largest tensor in bytes: the smaller of maxStorageBufferBindingSize and maxBufferSize. */
  readonly maxStorageBytes: number;

  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pipelineInfo = new WeakMap<GPUComputePipeline, PipelineInfo>();
  /** Bind-group layouts by their entries (pipelines that declare the same bindings share one). */
  private readonly layouts = new Map<
    string,
    {
      layout: GPUBindGroupLayout;
      pipelineLayout: GPUPipelineLayout;
      id: number;
      single: GPUBindGroupLayout[] | null;
    }
  >();
  /** One-binding layouts by binding type (the split groups). */
  private readonly singleLayouts = new Map<string, GPUBindGroupLayout>();
  /**
   * Bind groups by layout, arena chunk, meta size and storage buffers (the uniform offset is
   * dynamic): a training step reuses the same pooled buffers step after step, so most dispatches
   * find theirs here instead of paying createBindGroup (≈ 30 µs on Dawn).
   */
  private bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  /** What the open pass has set (to skip redundant setPipeline / setBindGroup calls). */
  private boundPass: GPUComputePassEncoder | null = null;
  private boundPipeline: GPUComputePipeline | null = null;
  private readonly bound: (GPUBindGroup | null)[] = [];
  /** Reused per dispatch: the dynamic offset of the meta binding. */
  private readonly dynamicOffset = new Uint32Array(1);
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

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;

  private arenaFree: ArenaChunk[] = [];
  private arenaUsed: ArenaChunk[] = [];
  private arena: ArenaChunk | null = null;

  /** Out-of-range index reports: [count, op code, index value, dim size]. */
  readonly errorFlag: GPUBuffer;

  private scopeOpen = false;
  private readonly scopeResults: Promise<GPUError | null>[] = [];
  private asyncError: Error | null = null;
  private lostError: Error | null = null;
  private destroyed = false;

  /**
   * Counters for tests and benchmarks. Bytes are whole GPU buffers (size classes): `bytesInUse`
   * held by live storages, `bytesReserved` also counting pooled and pending-free ones (PyTorch's
   * memory_allocated / memory_reserved); the peaks since `resetPeakBytes()`.
   */
  readonly stats = {
    buffersCreated: 0,
    pipelinesCreated: 0,
    submits: 0,
    dispatches: 0,
    bytesInUse: 0,
    peakBytesInUse: 0,
    bytesReserved: 0,
    peakBytesReserved: 0,
  };

  /** Per-dispatch GPU timing (benchmarks): one timestamped pass per dispatch while on. */
  private kprof: { sets: GPUQuerySet[]; keys: string[] } | null = null;
  private querySet: GPUQuerySet | null = null;
  private queryResolve: GPUBuffer | null = null;
  private queries = 0;

  constructor(device: GPUDevice, description: string) {
    this.device = device;
    this.queue = device.queue;
    this.limits = device.limits;
    this.features = new Set(device.features as unknown as Iterable<string>);
    this.description = description;
    this.maxStorageBytes = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    void device.lost.then((info) => {
      if (this.destroyed && info.reason === 'destroyed') return;
      this.lostError = new Error(`webgpu: the GPU device was lost (${info.reason}): ${info.message}`);
    });
    device.addEventListener('uncapturederror', (event) => {
      const e = (event as GPUUncapturedErrorEvent).error;
      this.asyncError ??= new Error(`webgpu: ${e.constructor.name}: ${e.message}`);
    });
    this.openScope();
    this.errorFlag = device.createBuffer({ size: 16, usage: STORAGE_USAGE });
    device.queue.writeBuffer(this.errorFlag, 0, new Uint32Array(4));
  }

  // ---- errors

  private openScope(): void {
    if (this.scopeOpen) return;
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('internal');
    this.scopeOpen = true;
  }

  private closeScope(): void {
    if (!this.scopeOpen) return;
    this.scopeOpen = false;
    for (let i = 0; i < 3; i++) {
      const p = this.device.popErrorScope().then(
        (e) => {
          if (e) this.asyncError ??= new Error(`webgpu: ${e.constructor.name}: ${e.message}`);
          return e;
        },
        () => null,
      );
      this.scopeResults.push(p);
    }
  }

  /** Throws an error reported asynchronously since the last check (device loss, validation, OOM). */
  check(op = 'webgpu'): void {
    if (this.destroyed)
      throw new OpError(op, 'the WebGPU device was destroyed (destroyWebGPU); call init again');
    if (this.lostError) throw this.lostError;
    if (this.asyncError) {
      const e = this.asyncError;
      this.asyncError = null;
      throw e;
    }
  }

  // ---- pipelines

  /** The compute pipeline for `key`, compiled from `code()` on first use. */
  pipeline(key: string, code: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      const source = code();
      const entries = layoutEntries(source);
      const sig = entries.map((e) => `${e.binding}:${e.buffer?.type}`).join(',');
      const splittable =
        entries.length <= this.limits.maxBindGroups && entries.every((e, i) => e.binding === i);
      let l = this.layouts.get(sig);
      if (!l) {
        const layout = this.device.createBindGroupLayout({ entries, label: sig });
        const single = splittable ? entries.map((e) => this.singleLayout(e)) : null;
        const pipelineLayout = this.device.createPipelineLayout({ bindGroupLayouts: single ?? [layout] });
        l = { layout, pipelineLayout, id: this.nextId++, single };
        this.layouts.set(sig, l);
      }
      // split: binding N of group 0 becomes binding 0 of group N
      const wgsl = l.single
        ? source.replace(
            /@group\(0\)(\s*)@binding\((\d+)\)/g,
            (_, sp: string, b: string) => `@group(${b})${sp}@binding(0)`,
          )
        : source;
      const module = this.device.createShaderModule({ code: wgsl, label: key });
      p = this.device.createComputePipeline({
        layout: l.pipelineLayout,
        compute: { module, entryPoint: 'main' },
        label: key,
      });
      this.pipelines.set(key, p);
      const tags = entries.map((e) => TYPE_TAG[e.buffer?.type ?? 'storage']);
      this.pipelineInfo.set(p, { split: l.single, tags, layout: l.layout, layoutId: l.id, key });
      this.stats.pipelinesCreated++;
    }
    return p;
  }

  private singleLayout(e: GPUBindGroupLayoutEntry): GPUBindGroupLayout {
    const type = e.buffer?.type ?? 'storage';
    let l = this.singleLayouts.get(type);
    if (!l) {
      l = this.device.createBindGroupLayout({ entries: [{ ...e, binding: 0 }], label: type });
      this.singleLayouts.set(type, l);
    }
    return l;
  }

  /** The one-binding bind group of `buffer` (cached by binding type, buffer and size). */
  private singleGroup(
    layout: GPUBindGroupLayout,
    tag: string,
    buffer: GPUBuffer,
    size: number,
  ): GPUBindGroup {
    const key = `${tag}|${this.bufferId(buffer)}:${size}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      group = this.device.createBindGroup({
        layout,
        entries: [{ binding: 0, resource: { buffer, offset: 0, size } }],
      });
      if (this.bindGroups.size >= BIND_GROUP_CACHE_MAX) this.bindGroups = new Map();
      this.bindGroups.set(key, group);
    }
    return group;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) {
      id = this.nextId++;
      this.bufferIds.set(buffer, id);
    }
    return id;
  }

  /** The bind group of a dispatch (cached: see `bindGroups`). */
  private bindGroup(
    info: PipelineInfo,
    chunk: ArenaChunk,
    metaBytes: number,
    buffers: readonly Binding[],
  ): GPUBindGroup {
    let key = `${info.layoutId}|${chunk.id}|${metaBytes}`;
    for (let i = 0; i < buffers.length; i++) key += `|${this.bufferId(buffers[i].buffer)}:${buffers[i].size}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: chunk.gpu, offset: 0, size: metaBytes } },
      ];
      for (let i = 0; i < buffers.length; i++) {
        entries.push({
          binding: i + 1,
          resource: { buffer: buffers[i].buffer, offset: 0, size: buffers[i].size },
        });
      }
      group = this.device.createBindGroup({ layout: info.layout, entries });
      if (this.bindGroups.size >= BIND_GROUP_CACHE_MAX) this.bindGroups = new Map();
      this.bindGroups.set(key, group);
    }
    return group;
  }

  // ---- memory

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
    this.openScope();
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
  }

  private destroyPooled(buffer: GPUBuffer): void {
    this.stats.bytesReserved -= buffer.size;
    this.forgetBindGroups(buffer);
    if (this.pending.has(buffer)) this.deferredDestroy.push(buffer);
    else buffer.destroy();
  }

  /** Drops the cached bind groups that bind `buffer` (about to be destroyed). */
  private forgetBindGroups(buffer: GPUBuffer): void {
    const id = this.bufferIds.get(buffer);
    if (id === undefined) return;
    const tag = `|${id}:`;
    for (const key of this.bindGroups.keys()) if (key.includes(tag)) this.bindGroups.delete(key);
  }

  /** Restarts the peaks of `stats` from the current byte counts. */
  resetPeakBytes(): void {
    this.stats.peakBytesInUse = this.stats.bytesInUse;
    this.stats.peakBytesReserved = this.stats.bytesReserved;
  }

  /** A new storage of `size` elements (contents undefined until a kernel writes them). */
  allocate(op: string, dtype: DType, size: number): Storage<GPUBuffer> {
    const bytes = size * ELEMENT_BYTES;
    const buffer = this.acquireBuffer(op, bytes, false);
    return newStorage('webgpu', dtype, size, bytes, buffer);
  }

  /** Returns a storage's buffer to the pool (pending until the open batch is submitted, if any). */
  release(buffer: GPUBuffer): void {
    if (this.destroyed) return;
    this.stats.bytesInUse -= buffer.size;
    if (this.dispatches > 0 || this.encoder) {
      this.pending.add(buffer);
      this.pendingFreeBytes += buffer.size;
      this.toPool(buffer);
      if (this.pendingFreeBytes >= PENDING_FREE_SUBMIT_BYTES) this.submit();
    } else this.toPool(buffer);
  }

  private toPool(buffer: GPUBuffer): void {
    const cap = Math.max(POOL_MAX_FREE_BYTES, this.stats.peakBytesInUse);
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

  /** Destroys every pooled buffer (memory held for reuse goes back to the driver). */
  emptyPool(): void {
    this.bindGroups.clear();
    for (const list of this.pool.values()) for (const b of list) this.destroyPooled(b);
    this.pool.clear();
    this.poolFreeBytes = 0;
  }

  upload(op: string, data: ArrayBufferView, dtype: DType, size: number): Storage<GPUBuffer> {
    this.check(op);
    const bytes = size * ELEMENT_BYTES;
    const storage = newStorage('webgpu', dtype, size, bytes, this.acquireBuffer(op, bytes, true));
    if (size > 0) {
      this.openScope();
      this.queue.writeBuffer(storage.handle, 0, data.buffer, data.byteOffset, size * ELEMENT_BYTES);
    }
    return storage;
  }

  // ---- recording

  /** Copies `words` into the uniform arena; returns their offset there (the chunk is `this.arena`). */
  private meta(words: Uint32Array, bytes: number): number {
    const align = Math.max(256, this.limits.minUniformBufferOffsetAlignment);
    if (bytes > ARENA_BYTES) throw new Error(`webgpu: kernel parameters too large (${bytes} bytes)`);
    let chunk = this.arena;
    if (!chunk || Math.ceil(chunk.used / align) * align + bytes > ARENA_BYTES) {
      if (chunk) this.arenaUsed.push(chunk);
      chunk = this.arenaFree.pop() ?? {
        id: this.nextId++,
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
      this.openScope();
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
    const info = this.pipelineInfo.get(pipeline);
    if (!info) throw new Error('webgpu: dispatch of a pipeline not made by this context');
    const metaBytes = Math.max(16, Math.ceil((meta.length * 4) / 16) * 16);
    this.dynamicOffset[0] = this.meta(meta, metaBytes);
    const chunk = this.arena as ArenaChunk;
    const split = info.split;
    const bindGroup = split
      ? this.singleGroup(split[0], `u${chunk.id}`, chunk.gpu, metaBytes)
      : this.bindGroup(info, chunk, metaBytes, buffers);
    const kp = this.kprof;
    const profiled = kp !== null && kp.keys.length < KPROF_MAX;
    if (profiled) {
      const i = kp.keys.length;
      if (i % KPROF_PER_SET === 0)
        kp.sets.push(this.device.createQuerySet({ type: 'timestamp', count: 2 * KPROF_PER_SET }));
      const q = 2 * (i % KPROF_PER_SET);
      const querySet = kp.sets[kp.sets.length - 1];
      this.copyEncoder();
      this.pass = this.copyEncoder().beginComputePass({
        timestampWrites: { querySet, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 },
      });
      kp.keys.push(info.key);
    }
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
        const group = this.singleGroup(split[i + 1], info.tags[i + 1], b.buffer, b.size);
        if (bound[i + 1] !== group) {
          pass.setBindGroup(i + 1, group);
          bound[i + 1] = group;
        }
      }
    }
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    if (profiled) {
      pass.end();
      this.pass = null;
    }
    this.dispatches++;
    this.stats.dispatches++;
    if (this.dispatches >= BATCH_DISPATCHES) this.submit();
  }

  /** Grid for `count` workgroups: x ≤ 65535, the rest in y. */
  grid(count: number): [number, number, number] {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (count <= max) return [Math.max(1, count), 1, 1];
    const y = Math.ceil(count / max);
    if (y > max) throw new Error(`webgpu: ${count} workgroups exceed the grid limit`);
    return [max, y, 1];
  }

  /** The open encoder with its compute pass ended (for copies). */
  private copyEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.openScope();
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
      if (chunk.used > 0) this.queue.writeBuffer(chunk.gpu, 0, chunk.cpu.buffer, 0, chunk.used);
    }
    if (this.encoder) {
      this.queue.submit([this.encoder.finish()]);
      this.stats.submits++;
      this.encoder = null;
    }
    // the queue orders later writes after this submit: the chunks and buffers can be reused now
    this.arenaFree.push(...this.arenaUsed);
    this.arenaUsed = [];
    this.dispatches = 0;
    this.pending.clear();
    this.pendingFreeBytes = 0;
    const doomed = this.deferredDestroy;
    this.deferredDestroy = [];
    for (const b of doomed) b.destroy();
    this.closeScope();
  }

  private staging(bytes: number): GPUBuffer {
    const cls = sizeClass(bytes);
    return this.stagingPool.get(cls)?.pop() ?? this.device.createBuffer({ size: cls, usage: READBACK_USAGE });
  }

  private returnStaging(b: GPUBuffer): void {
    let list = this.stagingPool.get(b.size);
    if (!list) {
      list = [];
      this.stagingPool.set(b.size, list);
    }
    if (list.length < 4) list.push(b);
    else b.destroy();
  }

  /**
   * Reads `bytes` of `buffer` back to the host: submits the open batch with a copy to a staging
   * buffer (plus the index error flag, then cleared), waits for the map, and reports any error
   * the GPU work raised meanwhile.
   */
  async read(buffer: GPUBuffer, bytes: number, names: readonly string[] = INDEX_OPS): Promise<ArrayBuffer> {
    this.check('read');
    const padded = Math.ceil(bytes / 16) * 16;
    const staging = this.staging(padded + 16);
    const enc = this.copyEncoder();
    if (bytes > 0) enc.copyBufferToBuffer(buffer, 0, staging, 0, Math.ceil(bytes / 4) * 4);
    enc.copyBufferToBuffer(this.errorFlag, 0, staging, padded, 16);
    enc.clearBuffer(this.errorFlag);
    this.submit();
    const scopes = this.scopeResults.splice(0);
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
    this.returnStaging(staging);
    await Promise.all(scopes);
    this.check('read');
    if (flag[0] > 0) {
      const op = names[flag[1] - 1] ?? 'index';
      const value = flag[2] | 0;
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
    if (!this.features.has('timestamp-query') || this.queries >= 256) return -1;
    if (!this.querySet) {
      this.querySet = this.device.createQuerySet({ type: 'timestamp', count: 256 });
      this.queryResolve = this.device.createBuffer({ size: 256 * 8, usage: 0x200 | 0x04 }); // QUERY_RESOLVE | COPY_SRC
    }
    const index = this.queries++;
    const enc = this.copyEncoder();
    enc.beginComputePass({ timestampWrites: { querySet: this.querySet, endOfPassWriteIndex: index } }).end();
    return index;
  }

  /** Starts (or stops) timing every dispatch on the GPU, one timestamped pass each (slows recording). */
  profileKernels(on: boolean): void {
    if (on && !this.features.has('timestamp-query')) return;
    this.kprof = on ? (this.kprof ?? { sets: [], keys: [] }) : null;
  }

  /** GPU nanoseconds per pipeline key of the dispatches profiled so far (waits for the GPU); clears them. */
  async readKernelProfile(): Promise<Map<string, { count: number; ns: number }>> {
    const kp = this.kprof;
    const out = new Map<string, { count: number; ns: number }>();
    if (!kp) return out;
    this.kprof = { sets: [], keys: [] };
    for (let s = 0; s < kp.sets.length; s++) {
      const n = Math.min(KPROF_PER_SET, kp.keys.length - s * KPROF_PER_SET);
      const buf = this.device.createBuffer({ size: 16 * KPROF_PER_SET, usage: 0x200 | 0x04 });
      this.copyEncoder().resolveQuerySet(kp.sets[s], 0, 2 * n, buf, 0);
      const t = new BigUint64Array(await this.read(buf, 16 * n));
      for (let i = 0; i < n; i++) {
        const key = kp.keys[s * KPROF_PER_SET + i];
        const e = out.get(key) ?? { count: 0, ns: 0 };
        e.count++;
        e.ns += Number(t[2 * i + 1] - t[2 * i]);
        out.set(key, e);
      }
      buf.destroy();
      kp.sets[s].destroy();
    }
    return out;
  }

  /** Nanoseconds of the marks recorded since the last call (waits for the GPU); clears them. */
  async readTimestamps(): Promise<number[]> {
    const n = this.queries;
    if (n === 0 || !this.querySet || !this.queryResolve) return [];
    this.copyEncoder().resolveQuerySet(this.querySet, 0, n, this.queryResolve, 0);
    this.queries = 0;
    const raw = new BigUint64Array(await this.read(this.queryResolve, n * 8));
    return Array.from(raw, (t) => Number(t));
  }

  /** Submits queued work and waits for the GPU; reports asynchronous errors. */
  async sync(): Promise<void> {
    await this.read(this.errorFlag, 0);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pipelines.clear();
    this.pool.clear();
    this.stagingPool.clear();
    this.device.destroy();
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }
}
