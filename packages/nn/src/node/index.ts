/**
 * @lowrank/nn/node — file helpers for Node.js. Kept out of the main entry so that browser
 * bundles never reach `node:fs`; the byte-level codec they use is in the main entry.
 *
 * @module @lowrank/nn/node
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Tensor } from '@lowrank/tensor';
import {
  checkpointFromBytes,
  checkpointToBytes,
  type RestoredCheckpoint,
  type TrainingState,
} from '../checkpoint.js';
import type { HostTensor } from '../module.js';
import { type ParsedSafetensors, parseSafetensors, serializeSafetensors, toHost } from '../safetensors.js';

/**
 * Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
 * flushed to disk and renamed over `path`, so a crash leaves the old file or the new one, never
 * a truncated one.
 *
 * @example
 * await writeFileAtomic('out/config.json', new TextEncoder().encode('{}'));
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  // make the rename itself durable where the platform allows opening directories
  try {
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // not supported here (e.g. Windows); the rename is still atomic
  }
}

/**
 * Saves tensors (on any device) or host arrays as a safetensors file, atomically.
 *
 * @example
 * await saveSafetensors('model.safetensors', model.stateDict(), { format: 'pt' });
 */
export async function saveSafetensors(
  path: string,
  tensors: Readonly<Record<string, Tensor | HostTensor>>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const host = new Map<string, HostTensor>();
  for (const [name, t] of Object.entries(tensors)) {
    host.set(name, 'storage' in t ? (await toHost(new Map([[name, t]]))).get(name)! : t);
  }
  await writeFileAtomic(path, serializeSafetensors(host, metadata));
}

/**
 * Reads and validates a safetensors file (see `parseSafetensors`).
 *
 * @example
 * const { tensors, metadata } = await loadSafetensors('model.safetensors');
 * model.loadStateDict(tensors);
 */
export async function loadSafetensors(path: string): Promise<ParsedSafetensors> {
  return parseSafetensors(await readFile(path));
}

/**
 * Saves model + optimizer + scheduler + generator states + step atomically.
 *
 * @example
 * await saveCheckpoint('run/ckpt.safetensors', { model, optimizer: opt, scheduler: sched, step });
 */
export async function saveCheckpoint(path: string, state: TrainingState): Promise<void> {
  await writeFileAtomic(path, await checkpointToBytes(state));
}

/**
 * Restores a checkpoint written by `saveCheckpoint` into existing objects.
 *
 * @example
 * const { step } = await loadCheckpoint('run/ckpt.safetensors', { model, optimizer: opt, scheduler: sched });
 */
export async function loadCheckpoint(path: string, target: TrainingState): Promise<RestoredCheckpoint> {
  return checkpointFromBytes(await readFile(path), target);
}
