import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { type HubOptions, type HubPartial, type HubStore, hubDownload } from './hub.js';

/**
 * The Hub cache directory: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`
 * (where Python's `huggingface_hub` looks too).
 *
 * @example
 * hubCacheDir(); // '/home/me/.cache/huggingface/hub'
 */
export function hubCacheDir(): string {
  const e = process.env;
  if (e.HF_HUB_CACHE) return e.HF_HUB_CACHE;
  if (e.HF_HOME) return join(e.HF_HOME, 'hub');
  return join(e.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface', 'hub');
}

/**
 * A `HubStore` in Hugging Face's cache layout, shared with Python's `huggingface_hub`:
 * `models--org--name/blobs/<etag>`, `snapshots/<commit>/<file>` (relative symlinks to the blobs,
 * copies where symlinks are refused), `refs/<revision>` (the commit); an unfinished blob is
 * `blobs/<etag>.incomplete`.
 *
 * @example
 * const snap = await hubDownload('HuggingFaceTB/SmolLM2-135M', { cache: new FsHubStore('/tmp/hub') });
 */
export class FsHubStore implements HubStore {
  /** @param dir The cache directory (default `hubCacheDir()`). */
  constructor(readonly dir: string = hubCacheDir()) {}

  /** The folder of one repository. */
  repoDir(repo: string): string {
    return join(this.dir, `models--${repo.split('/').join('--')}`);
  }

  /** The folder of one snapshot. */
  snapshotDir(repo: string, commit: string): string {
    return join(this.repoDir(repo), 'snapshots', commit);
  }

  private blob(repo: string, blob: string): string {
    return join(this.repoDir(repo), 'blobs', blob);
  }

  async readRef(repo: string, revision: string): Promise<string | null> {
    const p = join(this.repoDir(repo), 'refs', revision);
    return existsSync(p) ? (await readFile(p, 'utf8')).trim() : null;
  }

  async writeRef(repo: string, revision: string, commit: string): Promise<void> {
    const p = join(this.repoDir(repo), 'refs', revision);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(`${p}.tmp`, commit);
    await rename(`${p}.tmp`, p);
  }

  async hasFile(repo: string, commit: string, path: string): Promise<boolean> {
    const p = join(this.snapshotDir(repo, commit), path);
    return existsSync(p) && statSync(p).isFile(); // follows the link: a dangling one is no file
  }

  async readFile(repo: string, commit: string, path: string): Promise<Uint8Array | null> {
    if (!(await this.hasFile(repo, commit, path))) return null;
    return new Uint8Array(await readFile(join(this.snapshotDir(repo, commit), path)));
  }

  async linkBlob(repo: string, blob: string, commit: string, path: string): Promise<boolean> {
    const src = this.blob(repo, blob);
    if (!existsSync(src)) return false;
    const dst = join(this.snapshotDir(repo, commit), path);
    await mkdir(dirname(dst), { recursive: true });
    await rm(dst, { force: true });
    try {
      await symlink(relative(dirname(dst), src), dst);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
      await copyFile(src, dst); // no symlinks here (Windows without developer mode): a copy
    }
    return true;
  }

  async openPartial(repo: string, blob: string, restart: boolean): Promise<HubPartial> {
    const p = `${this.blob(repo, blob)}.incomplete`;
    await mkdir(dirname(p), { recursive: true });
    const fh = await open(p, restart ? 'w' : 'a');
    let size = (await fh.stat()).size;
    let closed = false;
    return {
      get size() {
        return size;
      },
      async write(bytes: Uint8Array) {
        await fh.write(bytes);
        size += bytes.length;
      },
      async close() {
        if (closed) return;
        closed = true;
        await fh.close();
      },
    };
  }

  async hashPartial(
    repo: string,
    blob: string,
    algorithm: 'sha256' | 'sha1',
    prefix: Uint8Array,
  ): Promise<string> {
    const h = createHash(algorithm).update(prefix);
    for await (const chunk of createReadStream(`${this.blob(repo, blob)}.incomplete`))
      h.update(chunk as Buffer);
    return h.digest('hex');
  }

  async finishPartial(repo: string, blob: string, commit: string, path: string): Promise<void> {
    await rename(`${this.blob(repo, blob)}.incomplete`, this.blob(repo, blob));
    await this.linkBlob(repo, blob, commit, path);
  }

  async discardPartial(repo: string, blob: string): Promise<void> {
    await rm(`${this.blob(repo, blob)}.incomplete`, { force: true });
  }
}

/** Options of `hubSnapshotDir`: `HubOptions` and the cache. */
export interface HubDirOptions extends HubOptions {
  /** The cache directory (default `hubCacheDir()`), or another store whose snapshots are folders. */
  cache?: string | FsHubStore;
}

/**
 * Downloads (or finds in the cache) a model repository's config, tokenizer and safetensors
 * weights, and returns the snapshot's folder, which loads like any model directory.
 *
 * @example
 * const dir = await hubSnapshotDir('HuggingFaceTB/SmolLM2-135M', { revision: 'main' });
 * const tok = loadHFTokenizer(dir);
 */
export async function hubSnapshotDir(repo: string, options: HubDirOptions = {}): Promise<string> {
  const store =
    options.cache instanceof FsHubStore ? options.cache : new FsHubStore(options.cache ?? hubCacheDir());
  const snap = await hubDownload(repo, { ...options, cache: store });
  const dir = store.snapshotDir(repo, snap.commit);
  if (!(await stat(dir).catch(() => null))?.isDirectory())
    throw new Error(`hub: ${repo}@${snap.commit}: the snapshot folder ${dir} is missing`);
  return dir;
}
