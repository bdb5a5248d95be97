import type { Device } from '../storage.js';

/**
 * The static memory plan of a captured step: liveness over the recorded kernel calls assigns
 * every intermediate (a value made and dead within the step) to a slot of its device, reusing a
 * slot as soon as the value in it has had its last use. Outputs, state the step leaves behind
 * (gradients) and constants live to the end. Pure arithmetic over sizes and positions; a test
 * checks the plan against naive interval arithmetic. A replay reserves each slot once and binds
 * the values to them (compile/step.ts, engine/slots.ts).
 */

/** One value of a step as the plan sees it. */
export interface PlanValue {
  /** Bytes it takes on its device. */
  readonly bytes: number;
  /** Index of the recorded call that makes it. */
  readonly def: number;
  /** Index of the last recorded call that reads it (def when none does). */
  readonly lastUse: number;
  /**
   * Intermediates die at their last use; the others live to the end of the step. An upload
   * (host data drawn per call) dies at its last use too but takes no slot: the queue writes host
   * data before the kernels of its batch run, so it could overwrite a slot an earlier kernel of
   * the batch still reads; it takes a pooled buffer no pending kernel uses, as eager uploads do.
   */
  readonly kind: 'intermediate' | 'upload' | 'output' | 'state' | 'constant';
  /** Its device: slots hold values of one device. */
  readonly device: Device;
}

/** What `compiled.memoryPlan()` reports. */
export interface MemoryPlan {
  /** Recorded kernel calls (and uploads, allocations and host callbacks) of the step. */
  readonly calls: number;
  /** Values made and dead within the step (uploads included). */
  readonly intermediates: number;
  /** Of those, the uploads of host data drawn per call (they take pooled buffers, not slots). */
  readonly uploads: number;
  /** Byte size of each slot the intermediates share. */
  readonly slots: readonly number[];
  /** The device of each slot. */
  readonly slotDevices: readonly Device[];
  /** Sum of the slots: what the intermediates take at once at most, as planned. */
  readonly arenaBytes: number;
  /** What the intermediates would take with no reuse at all (the sum of their sizes). */
  readonly unplannedBytes: number;
  /** Bytes of the step's outputs. */
  readonly outputBytes: number;
  /** Bytes of the state the step leaves behind (gradients it assigns, buffers it updates). */
  readonly stateBytes: number;
  /** Bytes of constants uploaded while tracing, kept for every replay. */
  readonly constantBytes: number;
  /** Bytes of the tensors the step reads or updates but did not make (parameters, optimizer state, inputs). */
  readonly externalBytes: number;
  /** The most bytes live at one point of the step: its values at their worst moment plus the external tensors. */
  readonly peakBytes: number;
}

/**
 * Slots for the intermediates of `values` (-1 for the others), largest value first: each takes the
 * smallest slot of its device that none of the values placed in it is live beside (their
 * [def, lastUse] intervals do not meet), or a new slot of its size. Slots never grow, so a small
 * value never pins a large slot's growth. The previous rule (values in call order, best fit, else
 * grow the largest free slot) left the SmolLM2-shaped step's arena at 6,034 MiB for a 3,797 MiB
 * peak on the H200 once its split-K products added 28 MiB partial sums between 9 MiB values; on
 * the CPU at batch 1 × 64 the arena went from 124.7 to 109.4 MiB, its live peak being 109.1.
 */
export function assignSlots(values: readonly PlanValue[]): {
  slotOf: number[];
  slots: number[];
  devices: Device[];
} {
  const slots: number[] = [];
  const devices: Device[] = [];
  const held: PlanValue[][] = []; // per slot: the values placed in it
  const slotOf = new Array<number>(values.length).fill(-1);
  const order = values
    .map((_, i) => i)
    .filter((i) => values[i].kind === 'intermediate')
    .sort((a, b) => values[b].bytes - values[a].bytes || values[a].def - values[b].def || a - b);
  const meets = (x: PlanValue, v: PlanValue) => x.def <= v.lastUse && v.def <= x.lastUse;
  for (const i of order) {
    const v = values[i];
    let best = -1;
    for (let s = 0; s < slots.length; s++) {
      if (devices[s] !== v.device || slots[s] < v.bytes) continue;
      if (best >= 0 && slots[s] >= slots[best]) continue;
      if (!held[s].some((x) => meets(x, v))) best = s;
    }
    if (best < 0) {
      best = slots.length;
      slots.push(v.bytes);
      devices.push(v.device);
      held.push([]);
    }
    slotOf[i] = best;
    held[best].push(v);
  }
  return { slotOf, slots, devices };
}

/**
 * The plan of a step of `calls` recorded calls whose values are `values` (`assigned`: their
 * slots, when the caller already computed them).
 */
export function planMemory(
  values: readonly PlanValue[],
  calls: number,
  externalBytes: number,
  assigned: ReturnType<typeof assignSlots> = assignSlots(values),
): MemoryPlan {
  const { slots, devices } = assigned;
  const sum = (kind: PlanValue['kind']) =>
    values.filter((v) => v.kind === kind).reduce((n, v) => n + v.bytes, 0);
  // live bytes per call: +bytes at def, −bytes after the last use (intermediates only)
  const delta = new Array<number>(calls + 1).fill(0);
  for (const v of values) {
    delta[v.def] += v.bytes;
    if (v.kind === 'intermediate' || v.kind === 'upload') delta[v.lastUse + 1] -= v.bytes;
  }
  let live = 0;
  let peak = 0;
  for (let t = 0; t < calls; t++) {
    live += delta[t];
    if (live > peak) peak = live;
  }
  return {
    calls,
    intermediates: values.filter((v) => v.kind === 'intermediate' || v.kind === 'upload').length,
    uploads: values.filter((v) => v.kind === 'upload').length,
    slots,
    slotDevices: devices,
    arenaBytes: slots.reduce((n, b) => n + b, 0),
    unplannedBytes: sum('intermediate') + sum('upload'),
    outputBytes: sum('output'),
    stateBytes: sum('state'),
    constantBytes: sum('constant'),
    externalBytes,
    peakBytes: peak + externalBytes,
  };
}
