import '@lowrank/autograd';
import { createHash } from 'node:crypto';
import { noGrad } from '@lowrank/autograd';
import * as lr from '@lowrank/tensor';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AutoModelForCausalLM } from '../src/auto.js';
import { browserHubStore, CacheApiHubStore, hubDownload, OpfsHubStore } from '../src/hub.js';
import { type AsyncRangeReader, isAsyncRangeReader } from '../src/loading-source.js';
import { FakeHub, filesOf } from './hub-server.js';
import { MemDir, MemFs } from './opfs-fake.js';

/**
 * `OpfsHubStore` (the browser's Origin Private File System) over an in-memory fake of the OPFS
 * API (opfs-fake.ts), downloading from a Hub-shaped server on 127.0.0.1: a first download, a
 * resumed interruption, a cache hit with no request, a truncated and a corrupt file (nothing
 * half-written left), and browsers without `FileSystemFileHandle.move`.
 */
const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const tinyDir = `${fixtures}peft-llama-tiny/base`;
const tiny = filesOf(tinyDir);
const weights = tiny.get('model.safetensors') as Uint8Array;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const blob = sha256(weights);
const hub = new FakeHub();
hub.add('org/tiny', tiny, ['main']);
let endpoint = '';
beforeAll(async () => {
  endpoint = await hub.start();
});
afterAll(() => hub.stop());
afterEach(() => hub.faults.clear());
const commit = () => hub.repos.get('org/tiny')!.commit;

async function logits(model: { forward(ids: lr.Tensor): { logits: lr.Tensor }; eval(): unknown }) {
  model.eval();
  const ids = lr.tensor([[1, 5, 9, 2, 7]], { dtype: 'int32' });
  const t = noGrad(() => model.forward(ids).logits);
  const out = Array.from((await t.data()) as Float32Array);
  lr.dispose(t, ids);
  return out;
}

/** Every path that ever held `blobs/{etag}` held the whole file (sizes from the log). */
function blobsOnlyWhole(fs: MemFs): void {
  const sizes = new Map([...tiny.values()].map((b) => [sha256(b), b.length]));
  for (const b of tiny.values())
    sizes.set(createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex'), b.length);
  for (const e of fs.log) {
    const m = /\/blobs\/([0-9a-f]{40,64})$/.exec(e.path);
    if (m) expect(e.size, e.path).toBe(sizes.get(m[1]));
  }
}

describe('OpfsHubStore over an in-memory OPFS', () => {
  it('downloads, resumes an interruption from its chunks, serves the snapshot with no request, loads with fromFiles', async () => {
    const fs = new MemFs();
    const store = new OpfsHubStore(fs.root);
    hub.faults.set('model.safetensors', { dropAfter: 150_000 });
    await expect(hubDownload('org/tiny', { endpoint, cache: store })).rejects.toThrow(
      /download interrupted at \d+ of 429336 bytes \(kept; the next call resumes\)/,
    );
    const repo = 'models--org--tiny';
    const chunks = [...fs.root.files()].filter(([k]) => k.startsWith(`${repo}/partial/${blob}/`));
    expect(chunks.map(([k]) => k)).toEqual([`${repo}/partial/${blob}/0`]);
    const kept = chunks[0][1].length;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(150_000);
    expect(chunks[0][1]).toEqual(weights.slice(0, kept));
    expect([...fs.root.files().keys()].some((k) => k.includes('/refs/'))).toBe(false);
    const from = hub.requests.length;
    const snap = await hubDownload('org/tiny', { endpoint, cache: store });
    expect(snap.fromCache).toBe(false);
    expect(hub.requests.slice(from).filter((r) => r.path.endsWith('/model.safetensors'))).toEqual([
      { method: 'GET', path: expect.stringContaining('/resolve/'), range: `bytes=${kept}-` },
    ]);
    // the layout: blobs by etag, snapshot files naming them, the ref; no partial or temporary file left
    const files = fs.root.files();
    expect(files.get(`${repo}/blobs/${blob}`)).toEqual(weights);
    expect(new TextDecoder().decode(files.get(`${repo}/snapshots/${commit()}/model.safetensors`))).toBe(blob);
    expect(new TextDecoder().decode(files.get(`${repo}/refs/main`))).toBe(commit());
    expect([...files.keys()].filter((k) => k.includes('/partial/') || k.endsWith('.incomplete'))).toEqual([]);
    expect(fs.log.some((e) => e.kind === 'move' && e.path === `/${repo}/blobs/${blob}`)).toBe(true);
    blobsOnlyWhole(fs);
    expect(fs.openWritables).toBe(0);
    expect(await snap.read('model.safetensors')).toEqual(weights);
    expect(await snap.read('tokenizer.json')).toEqual(tiny.get('tokenizer.json'));
    expect(await snap.read('nope.json')).toBeNull();
    // a cache hit: no request, from a new store over the same directory (a reload)
    const before = hub.requests.length;
    const again = await hubDownload('org/tiny', { endpoint, cache: new OpfsHubStore(fs.root) });
    expect(again.fromCache).toBe(true);
    expect(hub.requests.length).toBe(before);
    const model = await AutoModelForCausalLM.fromFiles(again.read);
    const reference = await AutoModelForCausalLM.fromFiles(async (n) => tiny.get(n) ?? null);
    expect(await logits(model)).toEqual(await logits(reference));
    // open: the weights as an OPFS file read by range (getFile()), the rest as bytes
    const file = await again.open('model.safetensors');
    expect(isAsyncRangeReader(file)).toBe(true);
    expect((file as AsyncRangeReader).size).toBe(weights.length);
    expect(await again.open('config.json')).toEqual(tiny.get('config.json'));
    const ranged = await AutoModelForCausalLM.fromFiles(again.open);
    expect(await logits(ranged)).toEqual(await logits(reference));
    ranged.dispose();
    model.dispose();
    reference.dispose();
  });

  it('a truncated file: a clear error, no chunk, blob or snapshot entry left; the next call downloads it whole', async () => {
    const fs = new MemFs();
    const store = new OpfsHubStore(fs.root);
    hub.faults.set('model.safetensors', { truncateTo: 5000 });
    await expect(hubDownload('org/tiny', { endpoint, cache: store })).rejects.toThrow(
      /model\.safetensors@[0-9a-f]{12}: truncated: the server sent 5000 of the 429336 bytes the Hub lists \(discarded\)/,
    );
    const left = [...fs.root.files().keys()];
    expect(
      left.filter((k) => k.includes('/partial/') || k.includes(blob) || k.endsWith('/model.safetensors')),
    ).toEqual([]);
    expect(left.some((k) => k.endsWith('/config.json'))).toBe(true); // the files before it are kept
    const snap = await hubDownload('org/tiny', { endpoint, cache: store });
    expect(await snap.read('model.safetensors')).toEqual(weights);
    blobsOnlyWhole(fs);
  });

  it('a corrupt file fails its SHA-256 and is discarded; a 404 names the file', async () => {
    const fs = new MemFs();
    hub.faults.set('model.safetensors', { corrupt: true });
    await expect(hubDownload('org/tiny', { endpoint, cache: new OpfsHubStore(fs.root) })).rejects.toThrow(
      `model.safetensors@${commit().slice(0, 12)}: SHA-256 mismatch: expected ${blob}`,
    );
    expect([...fs.root.files().keys()].filter((k) => k.includes('/partial/') || k.includes(blob))).toEqual(
      [],
    );
    hub.faults.set('tokenizer.json', { missing: true });
    await expect(
      hubDownload('org/tiny', { endpoint, cache: new OpfsHubStore(new MemFs().root) }),
    ).rejects.toThrow(/tokenizer\.json@[0-9a-f]{12}: not found \(HTTP 404/);
  });

  it('without FileSystemFileHandle.move: the blob is committed whole by its own writable, no temporary left', async () => {
    const fs = new MemFs(false);
    const snap = await hubDownload('org/tiny', { endpoint, cache: new OpfsHubStore(fs.root) });
    expect(await snap.read('model.safetensors')).toEqual(weights);
    expect(fs.log.some((e) => e.kind === 'move')).toBe(false);
    expect(
      [...fs.root.files().keys()].filter((k) => k.endsWith('.incomplete') || k.includes('/partial/')),
    ).toEqual([]);
    blobsOnlyWhole(fs);
  });

  it('revision and file names OPFS would refuse are encoded (slashes, a leading dot)', async () => {
    const fs = new MemFs();
    const store = new OpfsHubStore(fs.root);
    await store.writeRef('org/tiny', 'refs/pr/1', 'a'.repeat(40));
    await store.writeRef('org/tiny', '..', 'b'.repeat(40));
    expect(await store.readRef('org/tiny', 'refs/pr/1')).toBe('a'.repeat(40));
    expect(await store.readRef('org/tiny', '..')).toBe('b'.repeat(40));
    expect(await store.readRef('org/tiny', 'main')).toBeNull();
    expect([...fs.root.files().keys()].sort()).toEqual([
      'models--org--tiny/refs/%2E.',
      'models--org--tiny/refs/refs%2Fpr%2F1',
    ]);
    expect(await store.hasFile('org/tiny', 'c'.repeat(40), 'onnx/model.onnx')).toBe(false);
  });
});

describe('browserHubStore', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('OPFS when navigator.storage.getDirectory exists, else the Cache API, else a clear error', async () => {
    const fs = new MemFs();
    vi.stubGlobal('navigator', { storage: { getDirectory: async () => fs.root } });
    vi.stubGlobal('caches', { open: async () => ({}) });
    const store = await browserHubStore('my-hub');
    expect(store).toBeInstanceOf(OpfsHubStore);
    expect((store as OpfsHubStore).root).toBe(fs.root.entries.get('my-hub'));
    expect(fs.root.entries.get('my-hub')).toBeInstanceOf(MemDir);
    vi.stubGlobal('navigator', {});
    const opened: string[] = [];
    vi.stubGlobal('caches', {
      open: async (n: string) => {
        opened.push(n);
        return {};
      },
    });
    expect(await browserHubStore()).toBeInstanceOf(CacheApiHubStore);
    expect(opened).toEqual(['lowrank-hub']);
    vi.stubGlobal('caches', undefined);
    await expect(browserHubStore()).rejects.toThrow(
      /browserHubStore: this environment has neither navigator\.storage\.getDirectory .* nor caches/,
    );
  });
});
