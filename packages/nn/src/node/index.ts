/**
 * @lowrank/nn/node — file helpers for Node.js. Kept out of the main entry so that browser
 * bundles never reach `node:fs`; the byte-level codec they use is in the main entry.
 *
 * @module @lowrank/nn/node
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Tensor } from '@lowrank/tensor';
import {
  checkpointFromBytes,
  checkpointToBytes,
  type RestoredCheckpoint,
  type TrainingState,
} from '../checkpoint.js';
import type { HostTensor } from '../module.js';
import { type ParsedSafetensors, parseSafetensors, serializeSafetensors, toHost } from '../safetensors.js';

/** Whether process `pid` is alive on this machine (a signal-0 probe; EPERM means it exists). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes `<path>.tmp-<pid>-<hex>` files left by writes that were killed before their rename
 * (one interrupted run left six, 148 MB). Files of a process still running are left alone: it
 * may be writing them now.
 */
async function removeOrphans(path: string): Promise<void> {
  const prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch {
    return; // no directory yet: the write reports it
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length));
    // ours may be a write in flight in this process; a live one's may be in flight there
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    await unlink(join(dirname(path), name)).catch(() => {});
  }
}

/**
 * Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
 * flushed to disk and renamed over `path`, so a crash leaves the old file or the new one, never
 * a truncated one. Temporary files of earlier writes to `path` whose process is gone are removed.
 *
 * @example
 * await writeFileAtomic('out/config.json', new TextEncoder().encode('{}'));
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await removeOrphans(path);
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
