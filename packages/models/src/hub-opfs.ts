import type { HubPartial, HubStore } from './hub.js';
import { type AsyncRangeReader, blobRangeReader } from './loading-source.js';

/**
 * A `HubStore` on the browser's Origin Private File System (`navigator.storage.getDirectory()`),
 * in Hugging Face's cache layout under the directory it is given:
 *
 *   models--{org}--{name}/refs/{revision}              the commit a branch or tag points to
 *   models--{org}--{name}/blobs/{etag}                 finished files, by the Hub's etag
 *   models--{org}--{name}/partial/{etag}/{0,1,…}       an unfinished blob, in chunks of ≥ 8 MiB
 *   models--{org}--{name}/snapshots/{commit}/{path}    a small file naming the blob (OPFS has no links)
 *
 * Nothing half-written is ever a blob: `createWritable` writes to a swap file that becomes the
 * file only on `close()`, each chunk of a partial is its own file (a reload keeps the chunks
 * closed so far and resumes after them), and a finished blob is assembled under a temporary
 * name and moved into `blobs/` (`FileSystemFileHandle.move`; where a browser lacks `move`, the
 * blob's own writable, which is committed whole on `close()` or not at all).
 */

/** What `OpfsHubStore` needs of a `FileSystemWritableFileStream`. */
export interface OpfsWritable {
  /** Appends bytes (a `Blob` is copied without passing through JavaScript memory). */
  write(data: Uint8Array | Blob): Promise<void>;
  /** Commits the written bytes as the file's contents. */
  close(): Promise<void>;
  /** Drops the written bytes; the file keeps what it had. */
  abort(): Promise<void>;
}

/** What `OpfsHubStore` needs of a `FileSystemFileHandle`. */
export interface OpfsFileHandle {
  /** `'file'`. */
  readonly kind: 'file';
  /** The entry's name. */
  readonly name: string;
  /** The file's contents now. */
  getFile(): Promise<Blob>;
  /** A writable over a swap copy (empty unless `keepExistingData`), committed on `close()`. */
  createWritable(options?: { keepExistingData?: boolean }): Promise<OpfsWritable>;
  /** Moves (renames) the entry; absent in some browsers. */
  move?(parent: OpfsDirectoryHandle, name: string): Promise<void>;
}

/** What `OpfsHubStore` needs of a `FileSystemDirectoryHandle`. */
export interface OpfsDirectoryHandle {
  /** `'directory'`. */
  readonly kind: 'directory';
  /** The entry's name. */
  readonly name: string;
  /** A child directory (made with `create`; else a `NotFoundError` DOMException when absent). */
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<OpfsDirectoryHandle>;
  /** A child file (made empty with `create`; else a `NotFoundError` DOMException when absent). */
  getFileHandle(name: string, options?: { create?: boolean }): Promise<OpfsFileHandle>;
  /** Removes a child (`recursive` for a non-empty directory). */
  removeEntry(name: string, options?: { recursive?: boolean }): Promise<void>;
}

/** The bytes a partial collects before writing them as one chunk file (as `CacheApiHubStore`). */
const CHUNK_BYTES = 8 << 20;

function notFound(e: unknown): boolean {
  return (e as { name?: unknown } | null)?.name === 'NotFoundError';
}

/** A name OPFS takes for any revision or repository path: no `/`, never `.` or `..`. */
function entryName(s: string): string {
  return encodeURIComponent(s).replace(/^\./, '%2E');
}

function hex(buf: ArrayBuffer): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The Hub cache on the Origin Private File System; `browserHubStore()` picks it when
 * `navigator.storage.getDirectory` exists.
 *
 * @example
 * const root = await navigator.storage.getDirectory();
 * const store = new OpfsHubStore(await root.getDirectoryHandle('lowrank-hub', { create: true }));
 * const snap = await hubDownload('HuggingFaceTB/SmolLM2-135M', { cache: store, onProgress: console.log });
 * const model = await AutoModelForCausalLM.fromFiles(snap.read, { dtype: 'f16' });
 */
export class OpfsHubStore implements HubStore {
  /** @param root The directory the repositories' folders go in. */
  constructor(readonly root: OpfsDirectoryHandle) {}

  /** `models--org--name/{part}`, made when `create`; null when absent. */
  private async dir(repo: string, part: string[], create: boolean): Promise<OpfsDirectoryHandle | null> {
    try {
      let d = await this.root.getDirectoryHandle(`models--${repo.replace('/', '--')}`, { create });
      for (const p of part) d = await d.getDirectoryHandle(p, { create });
      return d;
    } catch (e) {
      if (!create && notFound(e)) return null;
      throw e;
    }
  }

  private async file(dir: OpfsDirectoryHandle | null, name: string): Promise<OpfsFileHandle | null> {
    if (!dir) return null;
    try {
      return await dir.getFileHandle(name);
    } catch (e) {
      if (notFound(e)) return null;
      throw e;
    }
  }

  private async text(dir: OpfsDirectoryHandle | null, name: string): Promise<string | null> {
    const f = await this.file(dir, name);
    return f ? (await f.getFile()).text() : null;
  }

  /** Writes a whole small file (committed on close: the old contents or the new, never half). */
  private async writeText(dir: OpfsDirectoryHandle, name: string, text: string): Promise<void> {
    const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
    await w.write(new TextEncoder().encode(text));
    await w.close();
  }

  private async blob(repo: string, blob: string): Promise<OpfsFileHandle | null> {
    return this.file(await this.dir(repo, ['blobs'], false), blob);
  }

  private async pointer(repo: string, commit: string, path: string): Promise<string | null> {
    return this.text(await this.dir(repo, ['snapshots', commit], false), entryName(path));
  }

  /**
   * The partial's chunk files, in order: `0`, `1`, … up to the first absent one (chunks are
   * written one after another and removed all together, so there are no gaps; probing by name
   * needs no directory iteration, which TypeScript's DOM typings lack).
   */
  private async chunks(repo: string, blob: string): Promise<OpfsFileHandle[]> {
    const dir = await this.dir(repo, ['partial', blob], false);
    const out: OpfsFileHandle[] = [];
    for (;;) {
      const f = await this.file(dir, `${out.length}`);
      if (!f) return out;
      out.push(f);
    }
  }

  async readRef(repo: string, revision: string): Promise<string | null> {
    return this.text(await this.dir(repo, ['refs'], false), entryName(revision));
  }

  async writeRef(repo: string, revision: string, commit: string): Promise<void> {
    await this.writeText((await this.dir(repo, ['refs'], true))!, entryName(revision), commit);
  }

  async hasFile(repo: string, commit: string, path: string): Promise<boolean> {
    const blob = await this.pointer(repo, commit, path);
    return blob !== null && (await this.blob(repo, blob)) !== null;
  }

  async readFile(repo: string, commit: string, path: string): Promise<Uint8Array | null> {
    const blob = await this.pointer(repo, commit, path);
    const f = blob === null ? null : await this.blob(repo, blob);
    return f ? new Uint8Array(await (await f.getFile()).arrayBuffer()) : null;
  }

  async openFile(repo: string, commit: string, path: string): Promise<AsyncRangeReader | null> {
    const blob = await this.pointer(repo, commit, path);
    const f = blob === null ? null : await this.blob(repo, blob);
    return f ? blobRangeReader(await f.getFile()) : null;
  }

  async linkBlob(repo: string, blob: string, commit: string, path: string): Promise<boolean> {
    if (!(await this.blob(repo, blob))) return false;
    await this.writeText((await this.dir(repo, ['snapshots', commit], true))!, entryName(path), blob);
    return true;
  }

  async openPartial(repo: string, blob: string, restart: boolean): Promise<HubPartial> {
    if (restart) await this.discardPartial(repo, blob);
    const dir = (await this.dir(repo, ['partial', blob], true))!;
    const chunks = await this.chunks(repo, blob);
    let size = 0;
    for (const c of chunks) size += (await c.getFile()).size;
    let next = chunks.length;
    const pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const w = await (await dir.getFileHandle(`${next}`, { create: true })).createWritable();
      try {
        for (const p of pending) await w.write(p);
        await w.close();
      } catch (e) {
        await w.abort();
        throw e;
      }
      next++;
      pending.length = 0;
      pendingBytes = 0;
    };
    return {
      get size() {
        return size;
      },
      async write(bytes: Uint8Array) {
        pending.push(bytes.slice());
        pendingBytes += bytes.length;
        size += bytes.length;
        if (pendingBytes >= CHUNK_BYTES) await flush();
      },
      close: flush,
    };
  }

  async hashPartial(
    repo: string,
    blob: string,
    algorithm: 'sha256' | 'sha1',
    prefix: Uint8Array,
  ): Promise<string> {
    const parts: BlobPart[] = [prefix.slice()];
    for (const c of await this.chunks(repo, blob)) parts.push(await c.getFile());
    const bytes = await new Blob(parts).arrayBuffer();
    return hex(await crypto.subtle.digest(algorithm === 'sha1' ? 'SHA-1' : 'SHA-256', bytes));
  }

  async finishPartial(repo: string, blob: string, commit: string, path: string): Promise<void> {
    const blobs = (await this.dir(repo, ['blobs'], true))!;
    const chunks = await this.chunks(repo, blob);
    const probe = await blobs.getFileHandle(`${blob}.incomplete`, { create: true });
    // assembled under a temporary name, then moved: `blobs/{etag}` exists whole or not at all
    const target = probe.move ? probe : await blobs.getFileHandle(blob, { create: true });
    const w = await target.createWritable();
    try {
      for (const c of chunks) await w.write(await c.getFile());
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
    if (probe.move) await probe.move(blobs, blob);
    else await blobs.removeEntry(`${blob}.incomplete`);
    await this.discardPartial(repo, blob);
    await this.writeText((await this.dir(repo, ['snapshots', commit], true))!, entryName(path), blob);
  }

  async discardPartial(repo: string, blob: string): Promise<void> {
    const dir = await this.dir(repo, ['partial'], false);
    if (!dir) return;
    try {
      await dir.removeEntry(blob, { recursive: true });
    } catch (e) {
      if (!notFound(e)) throw e;
    }
  }
}
