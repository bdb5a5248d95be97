/**
 * The Wasm memory that kernels (and their worker threads) read and write, with a TypeScript
 * allocator over it. Blocks come in size classes (multiples of 64 bytes up to 256 bytes, then
 * four classes per power of two, so at most 25% of a block is slack); freed blocks go onto
 * their class's free list and are reused first; the memory grows (in whole 64 KiB pages) only
 * when no free block fits. Addresses are 64-byte aligned (a cache line; SIMD loads need 16).
 *
 * The memory is shared (SharedArrayBuffer-backed) when the engine allows it, which is what lets
 * worker threads run kernels on it, and what keeps typed-array views valid when it grows. Over a
 * non-shared memory a grow detaches every view; `onGrow` listeners re-derive them.
 */

const PAGE = 65536;
/** wasm32 addresses 4 GiB: 65,536 pages of 64 KiB. */
const MAX_PAGES = 65536;
const ALIGN = 64;
// Address 0 stays unused so that 0 never names a block.
const BASE = ALIGN;

/** Size class of a request: the smallest class holding `bytes` (≥ 64, 64-byte multiples). */
export function sizeClass(bytes: number): number {
  if (bytes <= 4 * ALIGN) return Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return Math.ceil(bytes / step) * step;
}

/** Options of a `WasmHeap`. */
export interface WasmHeapOptions {
  /** Initial size in bytes (rounded up to pages); default 16 MiB. */
  initialBytes?: number;
  /** Whether to share the memory between threads; default: whenever the engine can. */
  shared?: boolean;
  /** Largest size in bytes (default 4 GiB, the wasm32 limit); a smaller one is tried if refused. */
  maximumBytes?: number;
}

/** A Wasm memory and the allocator over it. */
export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  /** Whether `memory.buffer` is a SharedArrayBuffer. */
  readonly shared: boolean;
  /** Maximum size in pages (what modules importing this memory must declare when shared). */
  readonly maximumPages: number;
  private top = BASE;
  private readonly freeLists = new Map<number, number[]>();
  private readonly live = new Map<number, number>();
  private liveBytes = 0;
  private readonly growListeners: (() => void)[] = [];

  constructor(options: WasmHeapOptions = {}) {
    const initial = Math.max(1, Math.ceil((options.initialBytes ?? 16 * 2 ** 20) / PAGE));
    const wantShared = options.shared ?? canShare();
    let maximum = Math.min(MAX_PAGES, Math.ceil((options.maximumBytes ?? 2 ** 32) / PAGE));
    let memory: WebAssembly.Memory | null = null;
    // A shared memory reserves its maximum up front; browsers on small devices may refuse 4 GiB.
    while (!memory) {
      try {
        memory = new WebAssembly.Memory({ initial, maximum, shared: wantShared });
      } catch (e) {
        if (maximum / 4 < initial) throw e;
        maximum = Math.floor(maximum / 4);
      }
    }
    this.memory = memory;
    this.maximumPages = maximum;
    this.shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  }

  /** Current size in bytes. */
  get capacity(): number {
    return this.memory.buffer.byteLength;
  }

  /** Bytes in live blocks (by class size). */
  get used(): number {
    return this.liveBytes;
  }

  /** Number of live blocks. */
  get blocks(): number {
    return this.live.size;
  }

  /**
   * Allocates a block of at least `bytes` bytes, 64-byte aligned; its contents are undefined
   * (a reused block keeps what it held). Throws when wasm32's 4 GiB would be exceeded.
   *
   * @example
   * const heap = new WasmHeap();
   * const p = heap.alloc(4 * 1024); // room for 1,024 float32s
   * new Float32Array(heap.memory.buffer, p, 1024).fill(1);
   * heap.free(p);
   */
  alloc(bytes: number): number {
    const cls = sizeClass(Math.max(1, bytes));
    let held = cls;
    let ptr = this.freeLists.get(cls)?.pop();
    if (ptr === undefined) {
      if (this.top + cls <= this.capacity || this.grow(this.top + cls)) {
        ptr = this.top;
        this.top += cls;
      } else {
        // near the limit, a free block of a larger class is better than failing
        const larger = this.largerFreeClass(cls);
        if (larger === undefined) {
          throw new RangeError(
            `wasm heap: cannot allocate ${bytes} bytes: ${this.liveBytes} bytes are in use and ` +
              `${this.top - BASE - this.liveBytes} cached in free lists, and the memory cannot grow ` +
              `past ${formatBytes(this.maximumPages * PAGE)} (wasm32 addresses at most 4 GiB)`,
          );
        }
        held = larger;
        ptr = this.freeLists.get(larger)!.pop()!;
      }
    }
    this.live.set(ptr, held);
    this.liveBytes += held;
    return ptr;
  }

  /**
   * Returns a block to its free list.
   *
   * @example
   * heap.free(heap.alloc(256));
   */
  free(ptr: number): void {
    const cls = this.live.get(ptr);
    if (cls === undefined) throw new Error(`wasm heap: ${ptr} is not a live block`);
    this.live.delete(ptr);
    this.liveBytes -= cls;
    let list = this.freeLists.get(cls);
    if (!list) {
      list = [];
      this.freeLists.set(cls, list);
    }
    list.push(ptr);
  }

  /**
   * Registers a callback run after the memory grew: over a non-shared memory every view of the
   * old buffer is detached by then and must be re-derived from `memory.buffer`.
   *
   * @example
   * heap.onGrow(() => { view = new Float32Array(heap.memory.buffer, ptr, n); });
   */
  onGrow(listener: () => void): void {
    this.growListeners.push(listener);
  }

  /** Grows the memory to hold `end` bytes; false when the limit (or the system) refuses. */
  private grow(end: number): boolean {
    const current = this.capacity / PAGE;
    const needed = Math.ceil(end / PAGE);
    if (needed > this.maximumPages) return false;
    // grow by at least a quarter of the current size: fewer grows, each of which may remap
    const target = Math.min(this.maximumPages, Math.max(needed, Math.ceil(current * 1.25)));
    try {
      this.memory.grow(target - current);
    } catch {
      try {
        this.memory.grow(needed - current);
      } catch {
        return false;
      }
    }
    for (const l of this.growListeners) l();
    return true;
  }

  private largerFreeClass(cls: number): number | undefined {
    let best: number | undefined;
    for (const [c, list] of this.freeLists) {
      if (c > cls && list.length > 0 && (best === undefined || c < best)) best = c;
    }
    return best;
  }
}

/** Whether this engine can share a Wasm memory between threads. */
export function canShare(): boolean {
  if (typeof SharedArrayBuffer === 'undefined') return false;
  try {
    return (
      new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer
    );
  } catch {
    return false;
  }
}

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${n / 2 ** 30} GiB` : `${n / 2 ** 20} MiB`;
}
