import type { Executor } from './matmul.js';
import type { WasmRuntime } from './runtime.js';

/**
 * A pool of worker threads running the kernel module over the runtime's shared memory.
 * Kernels are synchronous, so dispatch is too: the caller writes each worker's call into a
 * slot of a shared control block, wakes it with `Atomics.notify`, runs its own part, then
 * `Atomics.wait`s for the others. No message is posted per call: a call to one worker and back
 * costs 9 µs (median, p90 14 µs, on the 2-core VM under load), against 0.6 µs on the caller alone.
 *
 * Node uses `worker_threads` (unref'd: an idle pool never keeps the process alive); a browser
 * page uses Web Workers when it is cross-origin isolated (SharedArrayBuffer exists), and the
 * caller spins instead of waiting (the main thread of a page may not `Atomics.wait`).
 */

// Slot layout (bytes): int32 [seq, done, fn, argc, failed, mode, state] at 0, float64 args at 32.
const SLOT_BYTES = 256;
const MAX_ARGS = (SLOT_BYTES - 32) / 8;
const SEQ = 0;
const DONE = 1;
const FN = 2;
const ARGC = 3;
const FAILED = 4;
// mode 1: the call's tasks are in the queue, taken one at a time by whichever thread is free
const MODE = 5;
// the call's seq while no thread has taken it, −1 once the worker has, 0 once the caller has
// (a worker another process keeps off its core is not waited for: the caller runs its share)
const STATE = 6;
// The queue after the slots: int32 [next, count] then QUEUE_TASKS rows of MAX_ARGS float64s.
const QUEUE_TASKS = 256;
const QUEUE_BYTES = 16 + QUEUE_TASKS * MAX_ARGS * 8;

/**
 * What a worker runs, as plain JavaScript (no TypeScript, no imports of the package: it must
 * run from a string in both Node and a Blob URL). `start(data, post)` instantiates the module
 * and serves calls until told to stop (fn = −1).
 */
const WORKER_LOOP = `
function start(data, post) {
  const inst = new WebAssembly.Instance(data.module, { env: { memory: data.memory } });
  const fns = data.names.map((n) => inst.exports[n]);
  const ctl = new Int32Array(data.control, data.slot * ${SLOT_BYTES}, 8);
  const args = new Float64Array(data.control, data.slot * ${SLOT_BYTES} + 32, ${MAX_ARGS});
  const queue = new Int32Array(data.control, data.queue, 2);
  const table = new Float64Array(data.control, data.queue + 16, ${QUEUE_TASKS * MAX_ARGS});
  post({ ready: true });
  let seen = 0;
  for (;;) {
    Atomics.wait(ctl, ${SEQ}, seen);
    const seq = Atomics.load(ctl, ${SEQ});
    if (seq === seen) continue;
    seen = seq;
    // the caller may have taken this call back (it ran the share itself): then nothing to do
    if (Atomics.compareExchange(ctl, ${STATE}, seq, -1) !== seq) continue;
    const fn = ctl[${FN}];
    if (fn === -1) return;
    try {
      if (ctl[${MODE}] === 1) {
        // take tasks until none is left (this thread's scratch in args[0..2])
        const scratch = [args[0], args[1], args[2]];
        const argc = ctl[${ARGC}];
        for (;;) {
          const i = Atomics.add(queue, 0, 1);
          if (i >= queue[1]) break;
          const row = table.subarray(i * ${MAX_ARGS}, i * ${MAX_ARGS} + argc);
          fns[fn](...row, ...scratch);
        }
        Atomics.store(ctl, ${DONE}, seq);
        Atomics.notify(ctl, ${DONE});
        continue;
      }
      if (fn === -2) {
        // a generated kernel: its bytes in the shared memory (args: address, length, index)
        const bytes = new Uint8Array(data.memory.buffer, args[0], args[1]).slice();
        const extra = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
          env: { memory: data.memory, log: Math.log, cos: Math.cos },
        });
        fns[args[2]] = extra.exports.run;
        Atomics.store(ctl, ${DONE}, seq);
        Atomics.notify(ctl, ${DONE});
        continue;
      }
      const argc = ctl[${ARGC}];
      const a = new Array(argc);
      for (let i = 0; i < argc; i++) a[i] = args[i];
      fns[fn](...a);
    } catch (e) {
      ctl[${FAILED}] = 1;
      post({ error: String(e && e.stack ? e.stack : e) });
    }
    Atomics.store(ctl, ${DONE}, seq);
    Atomics.notify(ctl, ${DONE});
  }
}
`;

interface WorkerHandle {
  terminate(): void;
  /** Reads a message the worker posted, synchronously (Node), or null. */
  poll(): unknown;
}

interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  /** Byte offset of the task queue in `control`. */
  queue: number;
  names: string[];
  slot: number;
}

/**
 * Whether worker threads can share the runtime's memory here: Node, or a page that is
 * cross-origin isolated. Otherwise the pool has one thread (the caller).
 *
 * @example
 * threadsAvailable(rt); // true in Node
 */
export function threadsAvailable(rt: WasmRuntime): boolean {
  if (!rt.heap.shared) return false;
  if (isNode()) return true;
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: unknown };
  return g.crossOriginIsolated === true && typeof g.Worker === 'function';
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

/** A pool of `threads − 1` workers plus the calling thread; an `Executor` for the kernels. */
export class WorkerPool implements Executor {
  private seq = 0;
  private readonly slots: Int32Array[];
  private readonly queue: Int32Array;
  private readonly table: Float64Array;
  private readonly args: Float64Array[];
  private readonly names: Map<string, number>;
  /** The caller's own function of each kernel `load` added (the workers instantiate theirs). */
  private readonly loaded = new Map<string, (...args: number[]) => void>();
  private terminated = false;

  private constructor(
    private readonly rt: WasmRuntime,
    private readonly workers: WorkerHandle[],
    control: SharedArrayBuffer | null,
    names: string[],
  ) {
    this.slots = workers.map((_, i) => new Int32Array(control!, i * SLOT_BYTES, 8));
    const q = workers.length * SLOT_BYTES;
    this.queue = control ? new Int32Array(control, q, 2) : new Int32Array(2);
    this.table = control ? new Float64Array(control, q + 16, QUEUE_TASKS * MAX_ARGS) : new Float64Array(0);
    this.args = workers.map((_, i) => new Float64Array(control!, i * SLOT_BYTES + 32, MAX_ARGS));
    this.names = new Map(names.map((n, i) => [n, i]));
  }

  /** Threads that run kernels: the workers and the caller. */
  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Starts `threads − 1` workers (fewer when threads are unavailable: see `threadsAvailable`)
   * and resolves once each has instantiated the kernel module.
   *
   * @example
   * const pool = await WorkerPool.create(rt, 2);
   * registerKernels('cpu', { matmul: wasmMatmul(rt, pool) });
   * pool.terminate(); // when done (an idle pool does not keep Node alive anyway)
   */
  static async create(rt: WasmRuntime, threads: number): Promise<WorkerPool> {
    const n = threadsAvailable(rt) ? Math.max(0, Math.floor(threads) - 1) : 0;
    // no SharedArrayBuffer at all in a page that is not cross-origin isolated: no workers, no block
    const control = n > 0 ? new SharedArrayBuffer(n * SLOT_BYTES + QUEUE_BYTES) : null;
    const names = Object.keys(rt.exports);
    const workers: WorkerHandle[] = [];
    const spawn = isNode() ? spawnNode : spawnBrowser;
    try {
      await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          rt.scratchFor(i + 1);
          workers[i] = await spawn({
            module: rt.module,
            memory: rt.heap.memory,
            control: control!,
            queue: n * SLOT_BYTES,
            names,
            slot: i,
          });
        }),
      );
    } catch (e) {
      for (const w of workers) w?.terminate();
      throw e;
    }
    return new WorkerPool(rt, workers, control, names);
  }

  /**
   * Runs `fn(...tasks[t], ...scratch of thread t)` on thread t; task 0 on the caller. Returns
   * when all are done; rethrows a worker's error.
   *
   * @example
   * pool.run('gemm', [argsForRows0to63, argsForRows64to127]);
   */
  run(fn: string, tasks: readonly (readonly number[])[]): void {
    if (tasks.length > this.threads) {
      for (let t0 = 0; t0 < tasks.length; t0 += QUEUE_TASKS)
        this.runQueued(fn, tasks.slice(t0, t0 + QUEUE_TASKS));
      return;
    }
    if (this.terminated && tasks.length > 1) throw new Error('pool: terminated');
    const index = this.names.get(fn);
    if (index === undefined && !(tasks.length <= 1 && this.loaded.has(fn)))
      throw new Error(`pool: no kernel '${fn}'`);
    const seq = ++this.seq;
    for (let t = 1; t < tasks.length; t++) {
      const s = this.rt.scratchFor(t);
      const task = [...tasks[t], s.packA, s.packB, s.tile];
      if (task.length > MAX_ARGS) throw new Error(`pool: ${fn} takes more than ${MAX_ARGS} arguments`);
      this.post(t - 1, seq, index as number, task, 0);
    }
    const s = this.rt.scratch;
    const f = this.loaded.get(fn) ?? this.rt.exports[fn];
    let error: unknown = null;
    try {
      if (tasks.length > 0) f(...tasks[0], s.packA, s.packB, s.tile);
    } catch (e) {
      error = e;
    }
    // a worker's task it has not started is the caller's: wake-ups wait for a core another
    // process may hold (the 2-thread demo step waited 30 ms of its 120 for them on the shared VM)
    for (let t = 1; t < tasks.length && !error; t++) {
      if (Atomics.compareExchange(this.slots[t - 1], STATE, seq, 0) !== seq) continue;
      try {
        f(...tasks[t], s.packA, s.packB, s.tile);
      } catch (e) {
        error = e;
      }
    }
    this.waitAll(seq, `failed in ${fn}`, error, tasks.length - 1);
  }

  /**
   * More tasks than threads: they go to the queue and each thread, the caller included, takes
   * the next one until none is left, so a thread slowed by another process on its core takes
   * fewer (static halves waited for it: 38% of a 2-thread demo step on the shared VM). The tasks
   * are fixed before any runs, so which thread runs one changes no result.
   */
  private runQueued(fn: string, tasks: readonly (readonly number[])[]): void {
    const f = this.loaded.get(fn) ?? this.rt.exports[fn];
    const index = this.names.get(fn);
    const argc = tasks[0].length;
    if (tasks.some((t) => t.length !== argc)) throw new Error(`pool: ${fn}'s tasks differ in length`);
    if (argc + 3 > MAX_ARGS) throw new Error(`pool: ${fn} takes more than ${MAX_ARGS} arguments`);
    const s = this.rt.scratch;
    if (this.terminated || this.workers.length === 0 || index === undefined) {
      if (index === undefined && !this.loaded.has(fn)) throw new Error(`pool: no kernel '${fn}'`);
      for (const t of tasks) f(...t, s.packA, s.packB, s.tile);
      return;
    }
    tasks.forEach((t, i) => {
      this.table.set(t, i * MAX_ARGS);
    });
    this.queue[0] = 0;
    this.queue[1] = tasks.length;
    const seq = ++this.seq;
    for (let t = 0; t < this.workers.length; t++) {
      const sc = this.rt.scratchFor(t + 1);
      // the worker reads its scratch from args[0..2] and each task's argc numbers from the queue
      this.post(t, seq, index, [sc.packA, sc.packB, sc.tile], 1, argc);
    }
    let error: unknown = null;
    try {
      for (;;) {
        const i = Atomics.add(this.queue, 0, 1);
        if (i >= tasks.length) break;
        f(...tasks[i], s.packA, s.packB, s.tile);
      }
    } catch (e) {
      error = e;
      Atomics.store(this.queue, 0, tasks.length); // the others stop taking tasks
    }
    // a worker that has not woken yet is not waited for: the queue is empty
    for (const slot of this.slots) Atomics.compareExchange(slot, STATE, seq, 0);
    this.waitAll(seq, `failed in ${fn}`, error, this.workers.length);
  }

  /**
   * Hands call `seq` to worker `t`: kernel `fn` (an index; −1 stops, −2 loads a module), `args`
   * into its slot, `mode` 1 for the queue (then `argc` is a task's length), and wakes it.
   */
  private post(
    t: number,
    seq: number,
    fn: number,
    args: readonly number[],
    mode: 0 | 1,
    argc = args.length,
  ): void {
    const slot = this.slots[t];
    this.args[t].set(args);
    slot[FN] = fn;
    slot[ARGC] = argc;
    slot[MODE] = mode;
    slot[FAILED] = 0;
    slot[STATE] = seq;
    Atomics.store(slot, SEQ, seq);
    Atomics.notify(slot, SEQ);
  }

  /**
   * Waits until each of the first `count` workers that took call `seq` has finished it (one the
   * caller took back is not waited for); throws the first error, a worker's as
   * "wasm worker N <what>: …".
   */
  private waitAll(seq: number, what: string, first: unknown, count: number): void {
    let error = first;
    const spin = !isNode();
    for (let t = 0; t < count; t++) {
      const slot = this.slots[t];
      if (Atomics.load(slot, STATE) === 0) continue;
      while (Atomics.load(slot, DONE) !== seq) {
        if (!spin) Atomics.wait(slot, DONE, seq - 1, 1000);
      }
      if (slot[FAILED] && !error) {
        const message = this.workers[t].poll() as { error?: string } | null;
        error = new Error(`wasm worker ${t + 1} ${what}: ${message?.error ?? 'unknown error'}`);
      }
    }
    if (error) throw error;
  }

  /**
   * Makes a generated kernel (a module exporting `run`, importing `env.memory` and optionally
   * `env.log` / `env.cos`) callable as `name` on every thread: each worker compiles `bytes`
   * (copied through the shared memory: a worker blocked in `Atomics.wait` reads no messages) and
   * the caller runs `run`, its own instance. Synchronous; a name already loaded returns at once.
   *
   * @example
   * pool.load('ew:…', bytes, inst.exports.run);
   * pool.run('ew:…', [argsOfRows0to99, argsOfRows100to199]);
   */
  load(name: string, bytes: Uint8Array, run: (...args: number[]) => void): void {
    if (this.loaded.has(name)) return;
    this.loaded.set(name, run);
    if (this.terminated || this.workers.length === 0) return;
    const index = this.names.size;
    const at = this.rt.heap.alloc(bytes.length);
    try {
      new Uint8Array(this.rt.heap.memory.buffer, at, bytes.length).set(bytes);
      const seq = ++this.seq;
      for (let t = 0; t < this.workers.length; t++) this.post(t, seq, -2, [at, bytes.length, index], 0);
      try {
        this.waitAll(seq, `could not load ${name}`, null, this.workers.length);
      } catch (e) {
        this.loaded.delete(name);
        throw e;
      }
      this.names.set(name, index);
    } finally {
      this.rt.heap.free(at);
    }
  }

  /**
   * Stops the workers; the pool then runs single tasks on the caller only.
   *
   * @example
   * pool.terminate();
   */
  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    const seq = ++this.seq;
    for (let i = 0; i < this.workers.length; i++) {
      this.post(i, seq, -1, [], 0);
      this.workers[i].terminate();
    }
  }
}

interface NodeWorker {
  once(event: 'message' | 'error', listener: (value: unknown) => void): void;
  unref(): void;
  terminate(): Promise<number>;
}
interface NodeWorkerThreads {
  Worker: new (
    code: string,
    options: { eval: true; workerData: unknown; transferList?: unknown[] },
  ) => NodeWorker;
  MessageChannel: new () => { port1: NodePort; port2: NodePort };
  receiveMessageOnPort(port: NodePort): { message: unknown } | undefined;
}
interface NodePort {
  unref(): void;
  close(): void;
}

async function spawnNode(init: WorkerInit): Promise<WorkerHandle> {
  // a computed specifier keeps browser bundlers from resolving a Node built-in
  const specifier = 'node:worker_threads';
  const wt = (await import(/* @vite-ignore */ specifier)) as NodeWorkerThreads;
  const { port1, port2 } = new wt.MessageChannel();
  const code = `${WORKER_LOOP}
const { workerData } = require('node:worker_threads');
const port = workerData.port;
start(workerData.init, (m) => port.postMessage(m));`;
  const worker = new wt.Worker(code, {
    eval: true,
    workerData: { init, port: port2 },
    transferList: [port2],
  });
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      const got = wt.receiveMessageOnPort(port1);
      if (got) {
        clearInterval(poll);
        resolve();
      }
    }, 1);
    worker.once('error', (e) => {
      clearInterval(poll);
      reject(e);
    });
  });
  worker.unref();
  port1.unref();
  return {
    terminate: () => {
      port1.close();
      void worker.terminate();
    },
    poll: () => wt.receiveMessageOnPort(port1)?.message ?? null,
  };
}

async function spawnBrowser(init: WorkerInit): Promise<WorkerHandle> {
  const source = `${WORKER_LOOP}
self.onmessage = (e) => start(e.data, (m) => self.postMessage(m));`;
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  const worker = new Worker(url);
  const errors: unknown[] = [];
  await new Promise<void>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<{ ready?: boolean; error?: string }>) => {
      if (e.data.ready) resolve();
      else errors.push(e.data);
    };
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage(init);
  });
  URL.revokeObjectURL(url);
  return { terminate: () => worker.terminate(), poll: () => errors.shift() ?? null };
}
