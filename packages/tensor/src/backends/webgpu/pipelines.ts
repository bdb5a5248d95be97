/**
 * Compute pipelines and their bind groups: the pipeline cache, bind-group layouts derived from
 * each kernel's WGSL declarations, and the bind-group caches (one-binding groups for split
 * layouts, buffer tuples otherwise).
 */

export interface Binding {
  buffer: GPUBuffer;
  /** Bytes bound (a multiple of 4, > 0). */
  size: number;
}

/** A uniform arena chunk, as bind groups see it. */
export interface UniformChunk {
  /** Identifies the chunk in bind-group cache keys. */
  readonly id: number;
  readonly gpu: GPUBuffer;
}

/** Bind groups cached before the cache is emptied (bounds what it keeps alive). */
const BIND_GROUP_CACHE_MAX = 8192;

/** The explicit layout of a pipeline: binding 0 a uniform with a dynamic offset, then storages. */
export interface PipelineInfo {
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

export class Pipelines {
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
  private lastId = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly stats: { pipelinesCreated: number },
  ) {}

  /** A fresh id for bind-group cache keys (layouts, buffers and uniform arena chunks share them). */
  nextId(): number {
    return ++this.lastId;
  }

  /** The compute pipeline for `key`, compiled from `code()` on first use. */
  pipeline(key: string, code: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      const source = code();
      const entries = layoutEntries(source);
      const sig = entries.map((e) => `${e.binding}:${e.buffer?.type}`).join(',');
      const splittable =
        entries.length <= this.device.limits.maxBindGroups && entries.every((e, i) => e.binding === i);
      let l = this.layouts.get(sig);
      if (!l) {
        const layout = this.device.createBindGroupLayout({ entries, label: sig });
        const single = splittable ? entries.map((e) => this.singleLayout(e)) : null;
        const pipelineLayout = this.device.createPipelineLayout({ bindGroupLayouts: single ?? [layout] });
        l = { layout, pipelineLayout, id: this.nextId(), single };
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

  /** The layout of a pipeline made by `pipeline`, or undefined for any other. */
  info(pipeline: GPUComputePipeline): PipelineInfo | undefined {
    return this.pipelineInfo.get(pipeline);
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
  singleGroup(layout: GPUBindGroupLayout, tag: string, buffer: GPUBuffer, size: number): GPUBindGroup {
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
      id = this.nextId();
      this.bufferIds.set(buffer, id);
    }
    return id;
  }

  /** The bind group of a dispatch (cached: see `bindGroups`). */
  bindGroup(
    info: PipelineInfo,
    chunk: UniformChunk,
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

  /** Drops the cached bind groups that bind `buffer` (about to be destroyed). */
  forgetBindGroups(buffer: GPUBuffer): void {
    const id = this.bufferIds.get(buffer);
    if (id === undefined) return;
    const tag = `|${id}:`;
    for (const key of this.bindGroups.keys()) if (key.includes(tag)) this.bindGroups.delete(key);
  }

  /** Drops every cached bind group. */
  forgetAllBindGroups(): void {
    this.bindGroups.clear();
  }

  /** Forgets the compiled pipelines (the device is being destroyed). */
  clear(): void {
    this.pipelines.clear();
  }
}
