/**
 * GPU timing for benchmarks: timestamp marks between recorded work, and per-kernel profiling
 * (one timestamped compute pass per dispatch, summed by pipeline key).
 */

/** Dispatches timed per query set, and at most, while kernels are profiled. */
const KPROF_PER_SET = 2048;
const KPROF_MAX = 16 * KPROF_PER_SET;

const QUERY_RESOLVE_USAGE = 0x200 | 0x04; // QUERY_RESOLVE | COPY_SRC

/** What the profiler needs of its context: the open encoder and read-backs. */
export interface ProfilerHost {
  /** The open encoder with its compute pass ended. */
  copyEncoder(): GPUCommandEncoder;
  /** Submits the open batch and reads `bytes` of `buffer` back. */
  read(buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer>;
}

export class Profiler {
  /** Per-dispatch GPU timing (benchmarks): one timestamped pass per dispatch while on. */
  private kprof: { sets: GPUQuerySet[]; keys: string[] } | null = null;
  private querySet: GPUQuerySet | null = null;
  private queryResolve: GPUBuffer | null = null;
  private queries = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly features: ReadonlySet<string>,
    private readonly host: ProfilerHost,
  ) {}

  /**
   * Records a GPU timestamp taken once the work recorded so far has run (an empty compute pass
   * whose end is timestamped); returns its index for `readTimestamps`, or -1 without the
   * 'timestamp-query' feature or beyond 256 marks.
   */
  timestamp(): number {
    if (!this.features.has('timestamp-query') || this.queries >= 256) return -1;
    if (!this.querySet) {
      this.querySet = this.device.createQuerySet({ type: 'timestamp', count: 256 });
      this.queryResolve = this.device.createBuffer({ size: 256 * 8, usage: QUERY_RESOLVE_USAGE });
    }
    const index = this.queries++;
    const enc = this.host.copyEncoder();
    enc.beginComputePass({ timestampWrites: { querySet: this.querySet, endOfPassWriteIndex: index } }).end();
    return index;
  }

  /** Starts (or stops) timing every dispatch on the GPU, one timestamped pass each (slows recording). */
  profileKernels(on: boolean): void {
    if (on && !this.features.has('timestamp-query')) return;
    this.kprof = on ? (this.kprof ?? { sets: [], keys: [] }) : null;
  }

  /**
   * The timestamp writes of the pass for the next dispatch, of pipeline `key`, while kernels are
   * profiled (null when they are not, or beyond the most timed).
   */
  kernelWrites(key: string): GPUComputePassTimestampWrites | null {
    const kp = this.kprof;
    if (kp === null || kp.keys.length >= KPROF_MAX) return null;
    const i = kp.keys.length;
    if (i % KPROF_PER_SET === 0)
      kp.sets.push(this.device.createQuerySet({ type: 'timestamp', count: 2 * KPROF_PER_SET }));
    const q = 2 * (i % KPROF_PER_SET);
    const querySet = kp.sets[kp.sets.length - 1];
    kp.keys.push(key);
    return { querySet, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 };
  }

  /** GPU nanoseconds per pipeline key of the dispatches profiled so far (waits for the GPU); clears them. */
  async readKernelProfile(): Promise<Map<string, { count: number; ns: number }>> {
    const kp = this.kprof;
    const out = new Map<string, { count: number; ns: number }>();
    if (!kp) return out;
    this.kprof = { sets: [], keys: [] };
    for (let s = 0; s < kp.sets.length; s++) {
      const n = Math.min(KPROF_PER_SET, kp.keys.length - s * KPROF_PER_SET);
      const buf = this.device.createBuffer({ size: 16 * KPROF_PER_SET, usage: QUERY_RESOLVE_USAGE });
      this.host.copyEncoder().resolveQuerySet(kp.sets[s], 0, 2 * n, buf, 0);
      const t = new BigUint64Array(await this.host.read(buf, 16 * n));
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
    this.host.copyEncoder().resolveQuerySet(this.querySet, 0, n, this.queryResolve, 0);
    this.queries = 0;
    const raw = new BigUint64Array(await this.host.read(this.queryResolve, n * 8));
    return Array.from(raw, (t) => Number(t));
  }
}
