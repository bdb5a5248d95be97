import type { Generator, Tensor } from '@lowrank/tensor';
import type { HostTensor, Module } from './module.js';
import type { LambdaLR, SchedulerStateDict } from './optim/lr-scheduler.js';
import type { BaseOptions, Optimizer, OptimizerStateDict } from './optim/optimizer.js';
import { parseSafetensors, SafetensorsError, serializeSafetensors, toHost } from './safetensors.js';

/**
 * Training checkpoints as one safetensors file: the model's state dict under its own keys (so
 * the file loads as a plain model checkpoint too), optimizer state tensors under
 * `__optim__.<param index>.<name>`, and everything else (step, optimizer groups and steps,
 * scheduler, generator states, user values) as JSON in the metadata key `lowrank.checkpoint`.
 * Resuming restores the run bit for bit on the CPU backend.
 */

const META_KEY = 'lowrank.checkpoint';
const OPTIM_PREFIX = '__optim__.';

/** JSON values a checkpoint can carry for the caller. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };

/** Everything a training run needs to resume exactly: what `checkpointToBytes` saves. */
export interface TrainingState {
  /** The model (its state dict). */
  model: Module;
  /** The optimizer (its state: moments, step counts, group options). */
  optimizer?: Optimizer<BaseOptions>;
  /** The learning-rate scheduler (its step count). */
  scheduler?: LambdaLR;
  /** Generators whose states are saved (e.g. `{ dropout: gen, data: dataGen }`). */
  generators?: Readonly<Record<string, Generator>>;
  /** The training step reached (default 0). */
  step?: number;
  /** Anything else the caller wants back (JSON). */
  extra?: JsonValue;
}

interface CheckpointMeta {
  version: 1;
  step: number;
  /** FNV-1a (32-bit, hex) over every tensor's name, dtype, shape and data bytes, in name order. */
  checksum?: string;
  optimizer: { paramGroups: OptimizerStateDict['paramGroups']; steps: Record<string, number> } | null;
  scheduler: SchedulerStateDict | null;
  generators: Record<string, number[]>;
  extra: JsonValue;
}

/**
 * FNV-1a over the tensors in name order: a flipped byte anywhere in the data (or a renamed or
 * reshaped tensor) changes it. It guards against corruption, not tampering; the safetensors
 * parser already refuses malformed headers and sizes.
 */
function checksumOf(tensors: ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>): string {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  let h = 0x811c9dc5;
  const mix = (bytes: Uint8Array): void => {
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  };
  const text = new TextEncoder();
  for (const [name, t] of entries) {
    mix(text.encode(`${name}|${t.dtype}|${t.shape.join(',')}|`));
    mix(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

/**
 * Serialises a training state to safetensors bytes.
 *
 * @example
 * const bytes = await checkpointToBytes({ model, optimizer: opt, scheduler: sched, step: 100 });
 */
export async function checkpointToBytes(state: TrainingState): Promise<Uint8Array> {
  const tensors = new Map<string, Tensor>(Object.entries(state.model.stateDict()));
  let optimizer: CheckpointMeta['optimizer'] = null;
  if (state.optimizer) {
    const sd = state.optimizer.stateDict();
    const steps: Record<string, number> = {};
    for (const [i, entry] of Object.entries(sd.state)) {
      steps[i] = entry.step;
      for (const [name, t] of Object.entries(entry.tensors))
        tensors.set(`${OPTIM_PREFIX}${i}.${name}`, t as Tensor);
    }
    optimizer = { paramGroups: sd.paramGroups, steps };
  }
  const generators: Record<string, number[]> = {};
  for (const [k, g] of Object.entries(state.generators ?? {})) generators[k] = g.getState();
  const step = state.step ?? 0;
  if (!Number.isInteger(step) || step < 0)
    throw new RangeError(`checkpoint: step must be a non-negative integer, got ${step}`);
  const host = await toHost(tensors);
  const meta: CheckpointMeta = {
    version: 1,
    step,
    checksum: checksumOf(host),
    optimizer,
    scheduler: state.scheduler ? state.scheduler.stateDict() : null,
    generators,
    extra: state.extra ?? null,
  };
  return serializeSafetensors(host, { [META_KEY]: JSON.stringify(meta), format: 'pt' });
}

/** What `checkpointFromBytes` returns besides the objects it restored in place. */
export interface RestoredCheckpoint {
  /** The step saved. */
  step: number;
  /** The `extra` saved (null when none). */
  extra: JsonValue;
}

/**
 * Restores a training state from `checkpointToBytes` output into existing objects (built with
 * the same configuration). The model is loaded strictly. The step must be a non-negative
 * integer, and the tensor data must match the checksum saved with it (checkpoints written
 * before checksums existed have none and load unchecked).
 *
 * @example
 * const { step } = checkpointFromBytes(bytes, { model, optimizer: opt, scheduler: sched });
 */
export function checkpointFromBytes(bytes: Uint8Array, target: TrainingState): RestoredCheckpoint {
  const { tensors, metadata } = parseSafetensors(bytes);
  const raw = metadata[META_KEY];
  if (raw === undefined)
    throw new SafetensorsError(`not a lowrank training checkpoint (no '${META_KEY}' metadata)`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(raw) as CheckpointMeta;
  } catch {
    throw new SafetensorsError(`'${META_KEY}' metadata is not valid JSON`);
  }
  if (meta === null || typeof meta !== 'object' || meta.version !== 1)
    throw new SafetensorsError(`unsupported checkpoint version ${String(meta?.version)}`);
  if (typeof meta.step !== 'number' || !Number.isInteger(meta.step) || meta.step < 0)
    throw new SafetensorsError(
      `the checkpoint's step must be a non-negative integer, got ${JSON.stringify(meta.step) ?? 'nothing'}`,
    );
  if (meta.checksum !== undefined) {
    const actual = checksumOf(tensors);
    if (actual !== meta.checksum)
      throw new SafetensorsError(
        `the checkpoint's tensor data is corrupt: checksum ${actual}, saved ${String(meta.checksum)}`,
      );
  }
  const model: Record<string, HostTensor> = {};
  const optimState: OptimizerStateDict['state'] = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (!name.startsWith(OPTIM_PREFIX)) {
      model[name] = t;
      continue;
    }
    const rest = name.slice(OPTIM_PREFIX.length);
    const dot = rest.indexOf('.');
    const index = rest.slice(0, dot);
    optimState[index] ??= { step: meta.optimizer?.steps[index] ?? 0, tensors: {} };
    optimState[index].tensors[rest.slice(dot + 1)] = t;
  }
  target.model.loadStateDict(model);
  if (target.optimizer) {
    if (!meta.optimizer) throw new SafetensorsError('the checkpoint holds no optimizer state');
    for (const [i, step] of Object.entries(meta.optimizer.steps)) optimState[i] ??= { step, tensors: {} };
    target.optimizer.loadStateDict({ state: optimState, paramGroups: meta.optimizer.paramGroups });
  }
  if (target.scheduler) {
    if (!meta.scheduler) throw new SafetensorsError('the checkpoint holds no scheduler state');
    target.scheduler.loadStateDict(meta.scheduler);
  }
  for (const [k, g] of Object.entries(target.generators ?? {})) {
    const s = meta.generators[k];
    if (!s) throw new SafetensorsError(`the checkpoint holds no state for generator '${k}'`);
    g.setState(s);
  }
  return { step: meta.step, extra: meta.extra };
}
