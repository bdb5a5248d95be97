import '@lowrank/autograd';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noGrad } from '@lowrank/autograd';
import { applyLora } from '@lowrank/lora';
import { loadAdapter, saveAdapter } from '@lowrank/lora/node';
import * as lr from '@lowrank/tensor';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM as PureAuto } from '../src/auto.js';
import {
  CacheApiHubStore,
  type CacheLike,
  type HubProgress,
  hubDownload,
  hubEndpoint,
  isHubId,
} from '../src/hub.js';
import type { LlamaForCausalLM } from '../src/llama.js';
import { isAsyncRangeReader } from '../src/loading-source.js';
import {
  AutoModelForCausalLM,
  FsHubStore,
  hubCacheDir,
  hubSnapshotDir,
  loadHFTokenizer,
} from '../src/node.js';
import { FakeHub, filesOf } from './hub-server.js';

const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const tinyDir = `${fixtures}peft-llama-tiny/base`;
const tiny = filesOf(tinyDir);
const sharded = filesOf(`${fixtures}llama3-bf16-sharded/base`);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const tmp = mkdtempSync(join(tmpdir(), 'lowrank-hub-'));
const hub = new FakeHub();
hub.add('org/tiny', tiny, ['main', 'v1']);
hub.add('org/sharded', sharded);
let endpoint = '';
beforeAll(async () => {
  endpoint = await hub.start();
});
afterAll(async () => {
  await hub.stop();
  rmSync(tmp, { recursive: true, force: true });
});
afterEach(() => hub.faults.clear());

let n = 0;
const freshCache = () => join(tmp, `cache-${n++}`);
const repoDir = (cache: string, repo = 'org/tiny') => join(cache, `models--${repo.replace('/', '--')}`);

async function logits(model: {
  forward(ids: lr.Tensor): { logits: lr.Tensor };
  eval(): unknown;
}): Promise<number[]> {
  model.eval();
  const ids = lr.tensor([[1, 5, 9, 2, 7]], { dtype: 'int32' });
  const t = noGrad(() => model.forward(ids).logits);
  const out = Array.from((await t.data()) as Float32Array);
  t.dispose();
  ids.dispose();
  return out;
}

describe('Hub ids and settings', () => {
  it('isHubId takes org/name, not paths', () => {
    expect(isHubId('HuggingFaceTB/SmolLM2-135M')).toBe(true);
    expect(isHubId('meta-llama/Llama-3.2-1B')).toBe(true);
    for (const s of ['./a/b', '/abs/x', 'a/b/c', 'single', '../x', 'a/..', ''])
      expect(isHubId(s), s).toBe(false);
  });

  it('endpoint: option, else HF_ENDPOINT, else huggingface.co; cache: HF_HUB_CACHE, HF_HOME/hub, ~/.cache', () => {
    const saved = { ...process.env };
    try {
      delete process.env.HF_ENDPOINT;
      expect(hubEndpoint()).toBe('https://huggingface.co');
      process.env.HF_ENDPOINT = 'http://127.0.0.1:9/';
      expect(hubEndpoint()).toBe('http://127.0.0.1:9');
      expect(hubEndpoint({ endpoint: 'http://h:1' })).toBe('http://h:1');
      delete process.env.HF_HUB_CACHE;
      delete process.env.XDG_CACHE_HOME;
      process.env.HF_HOME = '/x/hf';
      expect(hubCacheDir()).toBe('/x/hf/hub');
      process.env.HF_HUB_CACHE = '/y/cache';
      expect(hubCacheDir()).toBe('/y/cache');
      delete process.env.HF_HUB_CACHE;
      delete process.env.HF_HOME;
      expect(hubCacheDir()).toMatch(/\.cache\/huggingface\/hub$/);
    } finally {
      process.env = saved;
    }
  });
});

describe('fromPretrained from a Hub-shaped server on 127.0.0.1', () => {
  it('first download: HF cache layout, the same model as from the directory, progress per file', async () => {
    const cache = freshCache();
    const before = hub.count();
    const progress: HubProgress[] = [];
    const model = await AutoModelForCausalLM.fromPretrained('org/tiny', {
      endpoint,
      cache,
      onProgress: (p) => progress.push(p),
    });
    expect(hub.count()).toBeGreaterThan(before);
    expect((model as LlamaForCausalLM).nameOrPath).toBe('org/tiny');
    const local = await AutoModelForCausalLM.fromPretrained(tinyDir);
    expect(await logits(model)).toEqual(await logits(local));
    const { commit } = hub.repos.get('org/tiny')!;
    const root = repoDir(cache);
    expect(readFileSync(join(root, 'refs', 'main'), 'utf8')).toBe(commit);
    const snap = join(root, 'snapshots', commit);
    expect(readdirSync(snap).sort()).toEqual([...tiny.keys()].sort());
    const st = join(snap, 'model.safetensors');
    expect(lstatSync(st).isSymbolicLink()).toBe(true);
    expect(readlinkSync(st)).toBe(join('..', '..', 'blobs', sha256(tiny.get('model.safetensors')!)));
    expect(readdirSync(join(root, 'blobs')).some((f) => f.endsWith('.incomplete'))).toBe(false);
    for (const [f, bytes] of tiny) expect(new Uint8Array(readFileSync(join(snap, f))), f).toEqual(bytes);
    const last = progress.filter((p) => p.file === 'model.safetensors').at(-1)!;
    expect(last).toEqual({ file: 'model.safetensors', loaded: 429336, total: 429336, cached: false });
    expect(new Set(progress.map((p) => p.file))).toEqual(new Set(tiny.keys()));
    expect(loadHFTokenizer(await hubSnapshotDir('org/tiny', { endpoint, cache })).encode('First')).toEqual(
      loadHFTokenizer(tinyDir).encode('First'),
    );
  });

  it('cache hit: no request at all, and it works with the server stopped', async () => {
    const cache = freshCache();
    await hubSnapshotDir('org/tiny', { endpoint, cache });
    const before = hub.requests.length;
    const progress: HubProgress[] = [];
    const dir = await hubSnapshotDir('org/tiny', { endpoint, cache, onProgress: (p) => progress.push(p) });
    expect(hub.requests.length).toBe(before);
    expect(progress).toEqual([]);
    const stopped = new FakeHub();
    const deadEndpoint = await stopped.start();
    await stopped.stop(); // nothing listens there now
    const model = await AutoModelForCausalLM.fromPretrained('org/tiny', { endpoint: deadEndpoint, cache });
    expect(model.config.vocab_size).toBe(512);
    expect(dir).toBe(join(repoDir(cache), 'snapshots', hub.repos.get('org/tiny')!.commit));
  });

  it('another revision of the same commit links the blobs it already has (no file transfer)', async () => {
    const cache = freshCache();
    await hubSnapshotDir('org/tiny', { endpoint, cache });
    const resolves = hub.count('/org/tiny/resolve/');
    await hubSnapshotDir('org/tiny', { endpoint, cache, revision: 'v1' });
    expect(hub.count('/org/tiny/resolve/')).toBe(resolves);
    expect(readFileSync(join(repoDir(cache), 'refs', 'v1'), 'utf8')).toBe(hub.repos.get('org/tiny')!.commit);
  });

  it('a moved branch: the cached snapshot until refresh: true, then the new commit (unchanged blobs linked)', async () => {
    const cache = freshCache();
    const files = new Map(tiny);
    hub.add('org/moving', files);
    const first = await hubDownload('org/moving', { endpoint, cache: new FsHubStore(cache) });
    const config = JSON.parse(new TextDecoder().decode(files.get('config.json')!)) as Record<string, unknown>;
    const changed = new Map(files);
    changed.set('config.json', new TextEncoder().encode(JSON.stringify({ ...config, rms_norm_eps: 1e-5 })));
    changed.set('extra.txt', new Uint8Array(1)); // another file count: another commit id
    const moved = hub.add('org/moving', changed);
    expect(moved.commit).not.toBe(first.commit);
    const stale = await hubDownload('org/moving', { endpoint, cache: new FsHubStore(cache) });
    expect([stale.commit, stale.fromCache]).toEqual([first.commit, true]);
    const from = hub.requests.length;
    const now = await hubDownload('org/moving', { endpoint, cache: new FsHubStore(cache), refresh: true });
    expect([now.commit, now.fromCache]).toEqual([moved.commit, false]);
    const fetched = hub.requests.slice(from).filter((r) => r.path.startsWith('/org/moving/resolve/'));
    expect(fetched.map((r) => r.path.split('/').pop())).toEqual(['config.json']);
    expect(readFileSync(join(repoDir(cache, 'org/moving'), 'refs', 'main'), 'utf8')).toBe(moved.commit);
  });

  it('offline with nothing cached: a clear error, no request', async () => {
    const before = hub.requests.length;
    await expect(
      hubSnapshotDir('org/tiny', { endpoint, cache: freshCache(), offline: true }),
    ).rejects.toThrow('hub: org/tiny@main is not in the cache (offline');
    expect(hub.requests.length).toBe(before);
  });

  it('HF_ENDPOINT points the download at the server when no endpoint is given', async () => {
    const saved = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = endpoint;
    try {
      const before = hub.count('/api/models/org/tiny/');
      await hubSnapshotDir('org/tiny', { cache: freshCache() });
      expect(hub.count('/api/models/org/tiny/')).toBeGreaterThan(before);
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });

  it('an access token (option, else HF_TOKEN) goes with every request, API and file', async () => {
    const from = hub.requests.length;
    await hubSnapshotDir('org/tiny', { endpoint, cache: freshCache(), accessToken: 'hf_test123' });
    const seen = hub.requests.slice(from);
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.filter((r) => r.auth !== 'Bearer hf_test123')).toEqual([]);
    const saved = process.env.HF_TOKEN;
    process.env.HF_TOKEN = 'hf_fromenv';
    try {
      const at = hub.requests.length;
      await hubSnapshotDir('org/tiny', { endpoint, cache: freshCache() });
      expect(new Set(hub.requests.slice(at).map((r) => r.auth))).toEqual(new Set(['Bearer hf_fromenv']));
    } finally {
      if (saved === undefined) delete process.env.HF_TOKEN;
      else process.env.HF_TOKEN = saved;
    }
  });

  it('interrupted mid-file: the error says so, the bytes are kept, the next call resumes with a Range request', async () => {
    const cache = freshCache();
    hub.faults.set('model.safetensors', { dropAfter: 200_000 });
    await expect(AutoModelForCausalLM.fromPretrained('org/tiny', { endpoint, cache })).rejects.toThrow(
      /hub: org\/tiny\/model\.safetensors@[0-9a-f]{12}: download interrupted at \d+ of 429336 bytes \(kept; the next call resumes\)/,
    );
    const blob = sha256(tiny.get('model.safetensors')!);
    const partial = join(repoDir(cache), 'blobs', `${blob}.incomplete`);
    const kept = statSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(200_000);
    expect(existsSync(join(repoDir(cache), 'refs', 'main'))).toBe(false); // not complete: no ref yet
    const from = hub.requests.length;
    const model = await AutoModelForCausalLM.fromPretrained('org/tiny', { endpoint, cache });
    const resumed = hub.requests.slice(from).filter((r) => r.path.endsWith('/model.safetensors'));
    expect(resumed).toEqual([
      { method: 'GET', path: expect.stringContaining('/resolve/'), range: `bytes=${kept}-` },
    ]);
    expect(existsSync(partial)).toBe(false);
    expect(await logits(model)).toEqual(await logits(await AutoModelForCausalLM.fromPretrained(tinyDir)));
  });

  it('a server that answers a Range request with the whole file: the download starts over and succeeds', async () => {
    const cache = freshCache();
    hub.faults.set('model.safetensors', { dropAfter: 100_000 });
    await expect(hubSnapshotDir('org/tiny', { endpoint, cache })).rejects.toThrow('download interrupted');
    hub.faults.set('model.safetensors', { ignoreRange: true });
    const dir = await hubSnapshotDir('org/tiny', { endpoint, cache });
    expect(new Uint8Array(readFileSync(join(dir, 'model.safetensors')))).toEqual(
      tiny.get('model.safetensors'),
    );
  });

  it('404 for a listed file: the error names the repo and the file; a missing repo is named too', async () => {
    const cache = freshCache();
    hub.faults.set('tokenizer.json', { missing: true });
    await expect(hubSnapshotDir('org/tiny', { endpoint, cache })).rejects.toThrow(
      /^hub: org\/tiny\/tokenizer\.json@[0-9a-f]{12}: not found \(HTTP 404 from http:\/\/127\.0\.0\.1:\d+\/org\/tiny\/resolve\/[0-9a-f]{40}\/tokenizer\.json\)$/,
    );
    await expect(hubSnapshotDir('org/nope', { endpoint, cache })).rejects.toThrow(
      /^hub: org\/nope@main: model info: not found \(no such repository or revision\)/,
    );
    await expect(hubSnapshotDir('org/tiny', { endpoint, cache, revision: 'v9' })).rejects.toThrow(
      'hub: org/tiny@v9: model info: not found',
    );
    await expect(AutoModelForCausalLM.fromPretrained('no/such/dir', { endpoint, cache })).rejects.toThrow(
      'model directory not found: no/such/dir (nor is it a Hub id of the form org/name)',
    );
  });

  it('truncated file: a clear error, nothing half-written left; the next call downloads it whole', async () => {
    const cache = freshCache();
    hub.faults.set('model.safetensors', { truncateTo: 1000 });
    await expect(hubSnapshotDir('org/tiny', { endpoint, cache })).rejects.toThrow(
      /hub: org\/tiny\/model\.safetensors@[0-9a-f]{12}: truncated: the server sent 1000 of the 429336 bytes the Hub lists \(discarded\)/,
    );
    const root = repoDir(cache);
    const blobs = readdirSync(join(root, 'blobs'));
    expect(blobs.filter((b) => b.includes(sha256(tiny.get('model.safetensors')!)))).toEqual([]);
    expect(blobs.some((b) => b.endsWith('.incomplete'))).toBe(false);
    const snap = join(root, 'snapshots', hub.repos.get('org/tiny')!.commit);
    expect(existsSync(join(snap, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(root, 'refs', 'main'))).toBe(false);
    const dir = await hubSnapshotDir('org/tiny', { endpoint, cache });
    expect(new Uint8Array(readFileSync(join(dir, 'model.safetensors')))).toEqual(
      tiny.get('model.safetensors'),
    );
  });

  it('a corrupt file fails its SHA-256 (LFS) or git object id (others), and is discarded', async () => {
    const cache = freshCache();
    hub.faults.set('model.safetensors', { corrupt: true });
    await expect(hubSnapshotDir('org/tiny', { endpoint, cache })).rejects.toThrow(
      `hub: org/tiny/model.safetensors@${hub.repos.get('org/tiny')!.commit.slice(0, 12)}: SHA-256 mismatch: expected ${sha256(tiny.get('model.safetensors')!)}`,
    );
    hub.faults.set('config.json', { corrupt: true });
    await expect(hubSnapshotDir('org/tiny', { endpoint, cache: freshCache() })).rejects.toThrow(
      /config\.json@[0-9a-f]{12}: git object id mismatch/,
    );
    const blobs = readdirSync(join(repoDir(cache), 'blobs'));
    expect(blobs.some((b) => b.endsWith('.incomplete') || b === sha256(tiny.get('model.safetensors')!))).toBe(
      false,
    );
  });

  it('a sharded bf16 checkpoint: the index and every shard, loaded as from its directory', async () => {
    const cache = freshCache();
    const model = await AutoModelForCausalLM.fromPretrained('org/sharded', { endpoint, cache });
    const local = await AutoModelForCausalLM.fromPretrained(`${fixtures}llama3-bf16-sharded/base`);
    expect(await logits(model)).toEqual(await logits(local));
    const snap = join(repoDir(cache, 'org/sharded'), 'snapshots', hub.repos.get('org/sharded')!.commit);
    expect(readdirSync(snap).sort()).toEqual([...sharded.keys()].sort());
  });
});

/** A Cache API stand-in over a Map (Node 20 has no `caches`), holding real `Response`s. */
class MapCache implements CacheLike {
  readonly entries = new Map<string, ArrayBuffer>();
  async match(request: string): Promise<Response | undefined> {
    const b = this.entries.get(request);
    return b ? new Response(b.slice(0)) : undefined;
  }
  async put(request: string, response: Response): Promise<void> {
    this.entries.set(request, await response.arrayBuffer());
  }
  async delete(request: string): Promise<boolean> {
    return this.entries.delete(request);
  }
  async keys(): Promise<{ url: string }[]> {
    return [...this.entries.keys()].map((url) => ({ url }));
  }
}

describe('CacheApiHubStore (browser cache), over a fake Cache', () => {
  it('downloads, resumes after an interruption, serves the snapshot from the cache, loads with fromFiles', async () => {
    const cache = new MapCache();
    const store = new CacheApiHubStore(cache);
    hub.faults.set('model.safetensors', { dropAfter: 150_000 });
    await expect(hubDownload('org/tiny', { endpoint, cache: store })).rejects.toThrow('download interrupted');
    const chunks = [...cache.entries.keys()].filter((k) => k.includes('/partial/'));
    expect(chunks.length).toBeGreaterThan(0);
    const kept = chunks.reduce((s, k) => s + cache.entries.get(k)!.byteLength, 0);
    const from = hub.requests.length;
    const snap = await hubDownload('org/tiny', { endpoint, cache: store });
    expect(snap.fromCache).toBe(false);
    expect(hub.requests.slice(from).find((r) => r.path.endsWith('/model.safetensors'))?.range).toBe(
      `bytes=${kept}-`,
    );
    expect([...cache.entries.keys()].some((k) => k.includes('/partial/'))).toBe(false);
    expect(await snap.read('model.safetensors')).toEqual(tiny.get('model.safetensors'));
    const before = hub.requests.length;
    const again = await hubDownload('org/tiny', { endpoint, cache: store });
    expect(again.fromCache).toBe(true);
    expect(hub.requests.length).toBe(before);
    const model = await PureAuto.fromFiles(again.read);
    const want = await logits(await AutoModelForCausalLM.fromPretrained(tinyDir));
    expect(await logits(model)).toEqual(want);
    // open: the weights as the cached response's Blob, read by range
    expect(isAsyncRangeReader(await again.open('model.safetensors'))).toBe(true);
    expect(await logits(await PureAuto.fromFiles(again.open))).toEqual(want);
  });

  it('a truncated file leaves no chunk behind', async () => {
    const cache = new MapCache();
    hub.faults.set('model.safetensors', { truncateTo: 5000 });
    await expect(hubDownload('org/tiny', { endpoint, cache: new CacheApiHubStore(cache) })).rejects.toThrow(
      'truncated: the server sent 5000 of the 429336 bytes',
    );
    expect(
      [...cache.entries.keys()].filter(
        (k) => k.includes('/partial/') || k.includes(sha256(tiny.get('model.safetensors')!)),
      ),
    ).toEqual([]);
  });
});

describe('PEFT adapters remember their base (base_model_name_or_path)', () => {
  it('saved from a Hub model: its id; from a directory: the path; another base warns on load', async () => {
    const cache = freshCache();
    const fromHub = await AutoModelForCausalLM.fromPretrained('org/tiny', { endpoint, cache });
    const lora = applyLora(fromHub, { r: 2, targetModules: ['q_proj', 'v_proj'] });
    const { dir } = await saveAdapter(lora, join(tmp, 'adapter-hub'));
    expect(JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(
      'org/tiny',
    );
    const warnings: string[] = [];
    const onWarning = (w: string) => warnings.push(w);
    await loadAdapter(await AutoModelForCausalLM.fromPretrained('org/tiny', { endpoint, cache }), dir, {
      onWarning,
    });
    await loadAdapter(
      await AutoModelForCausalLM.fromPretrained(await hubSnapshotDir('org/tiny', { endpoint, cache })),
      dir,
      {
        onWarning,
      },
    );
    expect(warnings).toEqual([]);
    await loadAdapter(await AutoModelForCausalLM.fromPretrained(tinyDir), dir, { onWarning });
    expect(warnings).toEqual([
      `loadAdapter: the adapter was trained on 'org/tiny' (base_model_name_or_path) but the model was loaded from '${tinyDir}'; it may not fit this base`,
    ]);
    const local = applyLora(await AutoModelForCausalLM.fromPretrained(tinyDir), {
      r: 2,
      targetModules: ['q_proj'],
    });
    const saved = await saveAdapter(local, join(tmp, 'adapter-dir'));
    expect(
      JSON.parse(readFileSync(join(saved.dir, 'adapter_config.json'), 'utf8')).base_model_name_or_path,
    ).toBe(tinyDir);
  });
});

describe('FsHubStore', () => {
  it('uses the directory it is given', async () => {
    const cache = freshCache();
    const store = new FsHubStore(cache);
    const dir = await hubSnapshotDir('org/tiny', { endpoint, cache: store });
    expect(dir.startsWith(store.repoDir('org/tiny'))).toBe(true);
  });
});
