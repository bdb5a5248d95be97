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
 * Slots for the intermediates of `values` (-1 for the others): best fit among the free slots of
 * the value's device, growing the largest free one if none fits.
 */
export function assignSlots(values: readonly PlanValue[]): {
  slotOf: number[];
  slots: number[];
  devices: Device[];
} {
  const slots: number[] = [];
  const devices: Device[] = [];
  const slotOf = new Array<number>(values.length).fill(-1);
  const order = values
    .map((_, i) => i)
    .filter((i) => values[i].kind === 'intermediate')
    .sort((a, b) => values[a].def - values[b].def || a - b);
  const busyUntil: number[] = []; // per slot: last use of its occupant
  for (const i of order) {
    const v = values[i];
    let best = -1;
    let largestFree = -1;
    for (let s = 0; s < slots.length; s++) {
      if (devices[s] !== v.device) continue;
      if (busyUntil[s] >= v.def) continue; // its occupant is still read at or after this call
      if (slots[s] >= v.bytes && (best < 0 || slots[s] < slots[best])) best = s;
      if (largestFree < 0 || slots[s] > slots[largestFree]) largestFree = s;
    }
    if (best < 0 && largestFree >= 0) {
      best = largestFree;
      slots[best] = v.bytes;
    }
    if (best < 0) {
      best = slots.length;
      slots.push(v.bytes);
      devices.push(v.device);
    }
    slotOf[i] = best;
    busyUntil[best] = v.lastUse;
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
