/**
 * `@lowrank/models/hub` — downloading a model repository from the Hugging Face Hub (or any
 * server with the Hub's API) into a cache, browser-safe: the storage is a `HubStore`
 * (`@lowrank/models/node` has one in HF's cache layout, and `fromPretrained('org/name')`;
 * `OpfsHubStore` keeps files on a browser's Origin Private File System, `CacheApiHubStore` in its
 * Cache API, `browserHubStore()` picks one). The metadata (the revision's commit,
 * the files with their sizes and hashes) comes through `@huggingface/hub`; the bytes from the
 * `resolve` endpoint, resumed with a `Range` request after an interruption. A separate entry
 * point, so that `@lowrank/models` itself does not pull in `@huggingface/hub`, whose browser
 * build is picked by its package.json `browser` field (Vite and webpack honour it; esbuild,
 * which resolves `exports` first, bundles its Node build).
 *
 * @module @lowrank/models/hub
 */
import { HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import type { AsyncRangeFileReader, FileReader } from './auto.js';
import { type OpfsDirectoryHandle, OpfsHubStore } from './hub-opfs.js';
import { type AsyncRangeReader, blobRangeReader } from './loading-source.js';

export {
  type OpfsDirectoryHandle,
  type OpfsFileHandle,
  OpfsHubStore,
  type OpfsWritable,
} from './hub-opfs.js';

/** The Hub's address when neither the `endpoint` option nor `HF_ENDPOINT` says another. */
export const HF_HUB_URL = 'https://huggingface.co';

/** The files of a model repository that `hubDownload` fetches when the repository has them (besides the weights). */
export const HUB_MODEL_FILES: readonly string[] = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
  'special_tokens_map.json',
];

/** One file's progress, as `onProgress` receives it. */
export interface HubProgress {
  /** The file's path in the repository. */
  file: string;
  /** Bytes of it on hand (from the cache, an earlier partial download, or this one). */
  loaded: number;
  /** Its size as the Hub lists it. */
  total: number;
  /** True when the file came from the cache without a transfer. */
  cached: boolean;
}

/** A file being written to a store: appended to, then finished or discarded. */
export interface HubPartial {
  /** Bytes written so far (a resumed partial starts with what an earlier call left). */
  readonly size: number;
  /** Appends bytes. */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes the partial (kept for a later resume). */
  close(): Promise<void>;
}

/**
 * Where downloaded files live: blobs named by the Hub's etag (the SHA-256 of an LFS file, the git
 * object id of another), snapshots (a commit's files, each one blob) and refs (revision → commit).
 */
export interface HubStore {
  /** The commit a cached revision (branch or tag) points to, or null. */
  readRef(repo: string, revision: string): Promise<string | null>;
  /** Records the commit a revision points to. */
  writeRef(repo: string, revision: string, commit: string): Promise<void>;
  /** Whether a snapshot holds a file. */
  hasFile(repo: string, commit: string, path: string): Promise<boolean>;
  /** A snapshot's file, or null when it is not there. */
  readFile(repo: string, commit: string, path: string): Promise<Uint8Array | null>;
  /**
   * A snapshot's file for reading by range (null when it is not there), where the store can:
   * an OPFS file's `getFile()`, a cached response's Blob. `HubSnapshot.open` uses it for
   * `.safetensors` files, so a load reads one tensor at a time.
   */
  openFile?(repo: string, commit: string, path: string): Promise<AsyncRangeReader | null>;
  /** Makes an existing blob the snapshot's file `path`; false when there is no such blob. */
  linkBlob(repo: string, blob: string, commit: string, path: string): Promise<boolean>;
  /** Opens the unfinished blob for appending (emptied first when `restart`). */
  openPartial(repo: string, blob: string, restart: boolean): Promise<HubPartial>;
  /** The hex digest (`sha256`, or `sha1` for git's object id) of the unfinished blob's bytes. */
  hashPartial(repo: string, blob: string, algorithm: 'sha256' | 'sha1', prefix: Uint8Array): Promise<string>;
  /** Turns the unfinished blob into the blob (closed first), and links it as the snapshot's `path`. */
  finishPartial(repo: string, blob: string, commit: string, path: string): Promise<void>;
  /** Removes the unfinished blob. */
  discardPartial(repo: string, blob: string): Promise<void>;
}

/** Options of `hubDownload` (and of `fromPretrained` with a Hub id). */
export interface HubOptions {
  /** Branch, tag or commit (default 'main'). */
  revision?: string;
  /** The Hub's address (default `HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /** A token for gated or private repositories (default `HF_TOKEN`). */
  accessToken?: string;
  /**
   * Ask the Hub what a branch or tag points to even when its snapshot is cached (a moved branch
   * is fetched; files whose blobs are cached are linked, not downloaded). Default false: a
   * complete cached snapshot is used with no request.
   */
  refresh?: boolean;
  /** Use only the cache, never the network (default: `HF_HUB_OFFLINE=1`). */
  offline?: boolean;
  /** Called as each file arrives. */
  onProgress?: (progress: HubProgress) => void;
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch;
}

/** What `hubDownload` returns. */
export interface HubSnapshot {
  /** The repository, `org/name`. */
  repo: string;
  /** The commit the revision resolved to. */
  commit: string;
  /** True when everything came from the cache, with no request. */
  fromCache: boolean;
  /** Reads a file of the snapshot (null when the snapshot lacks it): `AutoModelForCausalLM.fromFiles(snapshot.read)`. */
  read: FileReader;
  /**
   * `read`, but a `.safetensors` file comes as an `AsyncRangeReader` where the store can give
   * one (`HubStore.openFile`: OPFS, the Cache API), so `AutoModelForCausalLM.fromFiles(snapshot.open)`
   * reads each tensor's range as the load reaches it and never holds the file.
   */
  open: AsyncRangeFileReader;
}

const COMMIT = /^[0-9a-f]{40}$/;
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/**
 * Whether a string has the shape of a Hub model id (`org/name`: two names of letters, digits,
 * `-`, `_`, `.`); whether it is a directory is the caller's question.
 *
 * @example
 * isHubId('HuggingFaceTB/SmolLM2-135M'); // true
 * isHubId('./models/x'); // false
 */
export function isHubId(s: string): boolean {
  return HUB_ID.test(s) && !s.includes('..');
}

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const v = p?.env?.[name];
  return v === undefined || v === '' ? undefined : v;
}

/**
 * The Hub address in use: the option, else `HF_ENDPOINT`, else https://huggingface.co (no trailing slash).
 *
 * @example
 * hubEndpoint({ endpoint: 'http://127.0.0.1:8080/' }); // 'http://127.0.0.1:8080'
 */
export function hubEndpoint(options: { endpoint?: string } = {}): string {
  return (options.endpoint ?? env('HF_ENDPOINT') ?? HF_HUB_URL).replace(/\/+$/, '');
}

interface RemoteFile {
  path: string;
  size: number;
  blob: string;
  sha256: string | null;
  gitOid: string | null;
}

/** `config.json`, and the weights: `model.safetensors`, else the index (the shards are read from it). */
async function weightShards(
  repo: string,
  revision: string,
  readIndex: () => Promise<Uint8Array | null>,
): Promise<string[]> {
  const bytes = await readIndex();
  if (!bytes) throw new Error(`hub: ${repo}@${revision}: model.safetensors.index.json is missing`);
  let index: unknown;
  try {
    index = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(
      `hub: ${repo}@${revision}: model.safetensors.index.json is not valid JSON (${(e as Error).message})`,
    );
  }
  const map = (index as { weight_map?: unknown }).weight_map;
  if (map === null || typeof map !== 'object')
    throw new Error(`hub: ${repo}@${revision}: model.safetensors.index.json has no weight_map object`);
  const files = [...new Set(Object.values(map as Record<string, unknown>))];
  const bad = files.find((f) => typeof f !== 'string');
  if (bad !== undefined)
    throw new Error(`hub: ${repo}@${revision}: weight_map holds a non-string file ${JSON.stringify(bad)}`);
  return (files as string[]).sort();
}

/** Whether the store holds a loadable snapshot: config.json and every weight file (they are written last). */
async function cachedComplete(store: HubStore, repo: string, commit: string): Promise<boolean> {
  if (!(await store.hasFile(repo, commit, 'config.json'))) return false;
  if (await store.hasFile(repo, commit, 'model.safetensors')) return true;
  if (!(await store.hasFile(repo, commit, 'model.safetensors.index.json'))) return false;
  let shards: string[];
  try {
    shards = await weightShards(repo, commit, () =>
      store.readFile(repo, commit, 'model.safetensors.index.json'),
    );
  } catch {
    return false; // a broken index in the cache: fetch again (the download checks it against the Hub)
  }
  for (const s of shards) if (!(await store.hasFile(repo, commit, s))) return false;
  return true;
}

/** The parts one after another, in one new array. */
function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function hex(buf: ArrayBuffer | Uint8Array): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Rephrases an `@huggingface/hub` error with the repository (and file) it was about. */
function hubError(e: unknown, repo: string, revision: string, what: string): Error {
  if (e instanceof HubApiError) {
    const why =
      e.statusCode === 404
        ? 'not found (no such repository or revision)'
        : e.statusCode === 401 || e.statusCode === 403
          ? 'access denied (gated or private: set HF_TOKEN or the accessToken option)'
          : `HTTP ${e.statusCode}`;
    return new Error(`hub: ${repo}@${revision}: ${what}: ${why} (${e.url})`);
  }
  const err = e as Error;
  const cause = (err as { cause?: { message?: string } }).cause?.message;
  return new Error(`hub: ${repo}@${revision}: ${what} failed: ${err.message}${cause ? ` (${cause})` : ''}`);
}

async function downloadOne(
  store: HubStore,
  repo: string,
  commit: string,
  file: RemoteFile,
  ctx: { endpoint: string; accessToken?: string; fetch: typeof fetch; onProgress?: (p: HubProgress) => void },
): Promise<void> {
  const report = (loaded: number, cached: boolean) =>
    ctx.onProgress?.({ file: file.path, loaded, total: file.size, cached });
  const where = `${repo}/${file.path}@${commit.slice(0, 12)}`;
  if (await store.linkBlob(repo, file.blob, commit, file.path)) return report(file.size, true);
  let partial = await store.openPartial(repo, file.blob, false);
  if (partial.size > file.size) {
    await partial.close();
    partial = await store.openPartial(repo, file.blob, true);
  }
  // A partial is kept through network failures (the next call resumes it), and discarded when
  // what came cannot be the file (too long, or a complete response too short).
  let corrupt = false;
  try {
    if (partial.size < file.size) {
      const start = partial.size;
      const headers: Record<string, string> = {};
      if (ctx.accessToken) headers.Authorization = `Bearer ${ctx.accessToken}`;
      if (start > 0) headers.Range = `bytes=${start}-`;
      const url = `${ctx.endpoint}/${repo}/resolve/${commit}/${file.path.split('/').map(encodeURIComponent).join('/')}`;
      let res: Response;
      try {
        res = await ctx.fetch(url, { headers });
      } catch (e) {
        throw hubError(e, repo, commit, `downloading ${file.path}`);
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(
          `hub: ${where}: ${res.status === 404 ? 'not found ' : ''}(HTTP ${res.status} from ${url})`,
        );
      }
      if (start > 0) {
        const range = res.headers.get('content-range');
        if (res.status !== 206 || !range?.startsWith(`bytes ${start}-`)) {
          // the server sent the whole file (or another range): start over
          await partial.close();
          partial = await store.openPartial(repo, file.blob, true);
        }
      }
      report(partial.size, false);
      const reader = res.body?.getReader();
      if (!reader) throw new Error(`hub: ${where}: the response has no body`);
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (partial.size + value.length > file.size) {
            corrupt = true;
            await reader.cancel();
            throw new Error(
              `hub: ${where}: the server sent more than the ${file.size} bytes the Hub lists (discarded)`,
            );
          }
          await partial.write(value);
          report(partial.size, false);
        }
      } catch (e) {
        if (corrupt) throw e;
        throw new Error(
          `hub: ${where}: download interrupted at ${partial.size} of ${file.size} bytes (kept; the next call resumes): ${(e as Error).message}`,
        );
      }
    }
    if (partial.size !== file.size) {
      corrupt = true;
      throw new Error(
        `hub: ${where}: truncated: the server sent ${partial.size} of the ${file.size} bytes the Hub lists (discarded)`,
      );
    }
    await partial.close();
  } catch (e) {
    await partial.close();
    if (corrupt) await store.discardPartial(repo, file.blob);
    throw e;
  }
  const check = async (algorithm: 'sha256' | 'sha1', expected: string, prefix: Uint8Array) => {
    const got = await store.hashPartial(repo, file.blob, algorithm, prefix);
    if (got !== expected) {
      await store.discardPartial(repo, file.blob);
      throw new Error(
        `hub: ${where}: ${algorithm === 'sha1' ? 'git object id' : 'SHA-256'} mismatch: expected ${expected}, got ${got} (discarded)`,
      );
    }
  };
  if (file.sha256) await check('sha256', file.sha256, new Uint8Array(0));
  else if (file.gitOid) await check('sha1', file.gitOid, new TextEncoder().encode(`blob ${file.size}\0`));
  await store.finishPartial(repo, file.blob, commit, file.path);
}

/**
 * Downloads a model repository's config, tokenizer files and safetensors weights into `cache`
 * (or finds them there), checking each file's size and its SHA-256 (LFS files) or git object id
 * (others) against the Hub's listing. A revision whose snapshot is complete in the cache is
 * served without any request (`refs/` remembers what a branch pointed to; `refresh: true` asks
 * the Hub again). An interrupted transfer keeps its bytes and the next call resumes
 * it; a truncated or corrupt file is discarded and the call fails naming it.
 *
 * @example
 * const snap = await hubDownload('HuggingFaceTB/SmolLM2-135M', { cache: new CacheApiHubStore(await caches.open('hub')) });
 * const model = await AutoModelForCausalLM.fromFiles(snap.read);
 */
export async function hubDownload(
  repo: string,
  options: HubOptions & {
    /** Where the files go. */
    cache: HubStore;
  },
): Promise<HubSnapshot> {
  if (!isHubId(repo)) throw new Error(`hub: '${repo}' is not a model id of the form org/name`);
  const store = options.cache;
  const revision = options.revision ?? 'main';
  const read: (commit: string) => FileReader = (commit) => (name) => store.readFile(repo, commit, name);
  const open =
    (commit: string): AsyncRangeFileReader =>
    (name) =>
      name.endsWith('.safetensors') && store.openFile
        ? store.openFile(repo, commit, name)
        : store.readFile(repo, commit, name);
  const cachedCommit = COMMIT.test(revision) ? revision : await store.readRef(repo, revision);
  const fresh = options.refresh === true && !COMMIT.test(revision);
  if (cachedCommit && !fresh && (await cachedComplete(store, repo, cachedCommit))) {
    return {
      repo,
      commit: cachedCommit,
      fromCache: true,
      read: read(cachedCommit),
      open: open(cachedCommit),
    };
  }
  const offline = options.offline ?? env('HF_HUB_OFFLINE') === '1';
  if (offline)
    throw new Error(
      `hub: ${repo}@${revision} is not in the cache (offline: HF_HUB_OFFLINE=1 or the offline option)`,
    );
  const endpoint = hubEndpoint(options);
  const accessToken = options.accessToken ?? env('HF_TOKEN');
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const api = { hubUrl: endpoint, fetch: doFetch, ...(accessToken ? { accessToken } : {}) };
  let commit: string;
  try {
    const info = await modelInfo({ name: repo, revision, additionalFields: ['sha'], ...api });
    const sha = (info as { sha?: unknown }).sha;
    if (typeof sha !== 'string' || !COMMIT.test(sha))
      throw new Error(`the model info has no commit sha (got ${JSON.stringify(sha ?? null)})`);
    commit = sha;
  } catch (e) {
    throw hubError(e, repo, revision, 'model info');
  }
  const listing = new Map<string, RemoteFile>();
  try {
    for await (const f of listFiles({ repo, revision: commit, recursive: true, ...api })) {
      if (f.type !== 'file') continue;
      const blob = f.lfs?.oid ?? f.oid;
      if (!blob) throw new Error(`the tree lists ${f.path} without an oid`);
      listing.set(f.path, {
        path: f.path,
        size: f.size,
        blob,
        sha256: f.lfs?.oid ?? null,
        gitOid: f.lfs ? null : (f.oid ?? null),
      });
    }
  } catch (e) {
    throw hubError(e, repo, commit, 'file list');
  }
  if (!listing.has('config.json'))
    throw new Error(`hub: ${repo}@${revision}: the repository has no config.json`);
  const ctx = {
    endpoint,
    fetch: doFetch,
    onProgress: options.onProgress,
    ...(accessToken ? { accessToken } : {}),
  };
  const get = (path: string) => downloadOne(store, repo, commit, listing.get(path)!, ctx);
  for (const f of HUB_MODEL_FILES) if (listing.has(f)) await get(f);
  let weights: string[];
  if (listing.has('model.safetensors')) weights = ['model.safetensors'];
  else if (listing.has('model.safetensors.index.json')) {
    await get('model.safetensors.index.json');
    weights = await weightShards(repo, revision, () =>
      store.readFile(repo, commit, 'model.safetensors.index.json'),
    );
    const missing = weights.filter((w) => !listing.has(w));
    if (missing.length > 0)
      throw new Error(
        `hub: ${repo}@${revision}: the index names shards the repository lacks: ${missing.join(', ')}`,
      );
  } else {
    throw new Error(
      `hub: ${repo}@${revision}: no model.safetensors or model.safetensors.index.json (only safetensors weights load)`,
    );
  }
  for (const w of weights) await get(w); // last: a snapshot with every weight file is complete
  if (!COMMIT.test(revision)) await store.writeRef(repo, revision, commit);
  return { repo, commit, fromCache: false, read: read(commit), open: open(commit) };
}

/** What `CacheApiHubStore` needs of a browser `Cache` (a `caches.open(...)` result). */
export interface CacheLike {
  /** The stored response for a request, or undefined. */
  match(request: string): Promise<Response | undefined>;
  /** Stores a response. */
  put(request: string, response: Response): Promise<void>;
  /** Removes an entry; true when there was one. */
  delete(request: string): Promise<boolean>;
  /** The stored requests (their `url`s are the keys given to `put`). */
  keys(): Promise<
    readonly {
      /** The key's URL. */
      url: string;
    }[]
  >;
}

/**
 * A `HubStore` in a browser's Cache API (`await caches.open('lowrank-hub')`), keyed by URLs under
 * `base`. An unfinished blob is kept as numbered chunks, so a reload resumes it; a finished one
 * is one entry, and a snapshot's file is a small entry naming its blob.
 *
 * @example
 * const store = new CacheApiHubStore(await caches.open('lowrank-hub'));
 * const snap = await hubDownload('HuggingFaceTB/SmolLM2-135M', { cache: store, onProgress: console.log });
 */
export class CacheApiHubStore implements HubStore {
  /**
   * @param cache The browser cache (or anything with the same four methods).
   * @param base The URL prefix of the keys.
   */
  constructor(
    readonly cache: CacheLike,
    readonly base = 'https://lowrank.invalid/hub/',
  ) {}

  private key(repo: string, ...parts: string[]): string {
    return `${this.base}models--${repo.replace('/', '--')}/${parts.map(encodeURIComponent).join('/')}`;
  }

  private async text(key: string): Promise<string | null> {
    const r = await this.cache.match(key);
    return r ? r.text() : null;
  }

  private async chunkKeys(repo: string, blob: string): Promise<string[]> {
    const prefix = `${this.key(repo, 'partial', blob)}/`;
    const keys = (await this.cache.keys()).map((k) => k.url).filter((u) => u.startsWith(prefix));
    return keys.sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)));
  }

  private async partialBytes(repo: string, blob: string): Promise<Uint8Array<ArrayBuffer>[]> {
    const out: Uint8Array<ArrayBuffer>[] = [];
    for (const k of await this.chunkKeys(repo, blob)) {
      const r = await this.cache.match(k);
      if (r) out.push(new Uint8Array(await r.arrayBuffer()));
    }
    return out;
  }

  async readRef(repo: string, revision: string): Promise<string | null> {
    return this.text(this.key(repo, 'refs', revision));
  }

  async writeRef(repo: string, revision: string, commit: string): Promise<void> {
    await this.cache.put(this.key(repo, 'refs', revision), new Response(commit));
  }

  async hasFile(repo: string, commit: string, path: string): Promise<boolean> {
    const blob = await this.text(this.key(repo, 'snapshots', commit, path));
    return blob !== null && (await this.cache.match(this.key(repo, 'blobs', blob))) !== undefined;
  }

  async readFile(repo: string, commit: string, path: string): Promise<Uint8Array | null> {
    const blob = await this.text(this.key(repo, 'snapshots', commit, path));
    if (blob === null) return null;
    const r = await this.cache.match(this.key(repo, 'blobs', blob));
    return r ? new Uint8Array(await r.arrayBuffer()) : null;
  }

  async openFile(repo: string, commit: string, path: string): Promise<AsyncRangeReader | null> {
    const blob = await this.text(this.key(repo, 'snapshots', commit, path));
    if (blob === null) return null;
    const r = await this.cache.match(this.key(repo, 'blobs', blob));
    return r ? blobRangeReader(await r.blob()) : null;
  }

  async linkBlob(repo: string, blob: string, commit: string, path: string): Promise<boolean> {
    if (!(await this.cache.match(this.key(repo, 'blobs', blob)))) return false;
    await this.cache.put(this.key(repo, 'snapshots', commit, path), new Response(blob));
    return true;
  }

  async openPartial(repo: string, blob: string, restart: boolean): Promise<HubPartial> {
    if (restart) await this.discardPartial(repo, blob);
    const chunks = await this.partialBytes(repo, blob);
    let size = chunks.reduce((n, c) => n + c.length, 0);
    let next = chunks.length;
    const prefix = this.key(repo, 'partial', blob);
    const cache = this.cache;
    const pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const joined = concat(pending);
      pending.length = 0;
      pendingBytes = 0;
      await cache.put(`${prefix}/${next++}`, new Response(joined));
    };
    return {
      get size() {
        return size;
      },
      async write(bytes: Uint8Array) {
        pending.push(bytes.slice());
        pendingBytes += bytes.length;
        size += bytes.length;
        if (pendingBytes >= 8 << 20) await flush();
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
    const all = concat([prefix, ...(await this.partialBytes(repo, blob))]);
    return hex(await crypto.subtle.digest(algorithm === 'sha1' ? 'SHA-1' : 'SHA-256', all));
  }

  async finishPartial(repo: string, blob: string, commit: string, path: string): Promise<void> {
    const chunks = await this.partialBytes(repo, blob);
    await this.cache.put(this.key(repo, 'blobs', blob), new Response(new Blob(chunks)));
    await this.discardPartial(repo, blob);
    await this.cache.put(this.key(repo, 'snapshots', commit, path), new Response(blob));
  }

  async discardPartial(repo: string, blob: string): Promise<void> {
    for (const k of await this.chunkKeys(repo, blob)) await this.cache.delete(k);
  }
}

/**
 * The browser's Hub cache, named `name`: on the Origin Private File System (`OpfsHubStore`)
 * when `navigator.storage.getDirectory` exists, else in the Cache API (`CacheApiHubStore`);
 * an environment with neither is refused.
 *
 * @example
 * const snap = await hubDownload('HuggingFaceTB/SmolLM2-135M', { cache: await browserHubStore() });
 */
export async function browserHubStore(name = 'lowrank-hub'): Promise<HubStore> {
  const g = globalThis as {
    navigator?: { storage?: { getDirectory?: () => Promise<OpfsDirectoryHandle> } };
    caches?: { open(name: string): Promise<CacheLike> };
  };
  const storage = g.navigator?.storage;
  if (typeof storage?.getDirectory === 'function') {
    const root = await storage.getDirectory();
    return new OpfsHubStore(await root.getDirectoryHandle(name, { create: true }));
  }
  if (g.caches) return new CacheApiHubStore(await g.caches.open(name));
  throw new Error(
    'browserHubStore: this environment has neither navigator.storage.getDirectory (the Origin Private File System) nor caches (the Cache API); give hubDownload a HubStore',
  );
}
