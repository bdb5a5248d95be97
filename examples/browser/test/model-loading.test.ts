/**
 * The page's model-loading controls in real Chromium (Debian's `chromium`, playwright-core), on
 * the CPU backend: a Llama-family folder picked through `<input type=file webkitdirectory>`
 * (the peft-llama-tiny fixture, given with setInputFiles), with f32 and f16 weights; the same
 * model by Hub id from a Hub-shaped server on 127.0.0.1 (proxied under the page's origin), cached
 * on the Origin Private File System and found there on the next load; a text file picked to
 * train on; training through the page's buttons with the memory shown. The page's logits and
 * token counts are checked against Node (the same files, the CPU backend). The page is built
 * into a folder of its own, so this file and browser.test.ts can run side by side.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, loadHFTokenizer } from '@lowrank/models/node';
import { safetensorsEntries } from '@lowrank/nn';
import * as lr from 'lowrank';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeHub, filesOf } from '../../../packages/models/test/hub-server.js';
import type { PageApi } from '../src/main.js';
import { ISOLATION_HEADERS } from '../vite.config.js';

const pageRoot = fileURLToPath(new URL('..', import.meta.url));
const fixture = fileURLToPath(
  new URL('../../../packages/models/test/fixtures/peft-llama-tiny/base', import.meta.url),
);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skipReason = existsSync(CHROMIUM) ? null : `chromium not found at ${CHROMIUM}`;
const FIXED = 'The cat sat on the mat.';
const SLOW = 300_000;

/** Serves `root`, and `/hub/…` from the fake Hub (same origin: the page is cross-origin isolated). */
function serve(root: string, hubUrl: () => string): Promise<Server> {
  const types: Record<string, string> = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript',
    '.css': 'text/css',
    '.json': 'application/json',
    '.txt': 'text/plain; charset=utf-8',
  };
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    if (path.startsWith('/hub/')) {
      const target = new URL(`${hubUrl()}${(req.url ?? '').slice(4)}`);
      const proxied = request(
        target,
        { method: req.method, headers: { ...req.headers, host: target.host } },
        (r) => {
          res.writeHead(r.statusCode ?? 502, { ...r.headers, ...ISOLATION_HEADERS });
          r.pipe(res);
        },
      );
      req.pipe(proxied);
      return;
    }
    const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res
        .writeHead(200, {
          'Content-Type': types[extname(file)] ?? 'application/octet-stream',
          ...ISOLATION_HEADERS,
        })
        .end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const api = <T>(page: Page, f: (a: PageApi) => T | Promise<T>): Promise<T> =>
  page.evaluate(
    (src) =>
      new Function('a', `return (${src})(a)`)((window as unknown as { lowrankPage: PageApi }).lowrankPage),
    f.toString(),
  ) as Promise<T>;
const waitState = (page: Page, states: string[], timeout: number) =>
  page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ''), states, { timeout });
const fieldErrors = (page: Page) =>
  page.$$eval('.field-error, #error', (els) => els.map((e) => e.textContent ?? '').filter((t) => t !== ''));

async function nodeLogits(dtype: 'f32' | 'f16'): Promise<Float32Array> {
  await lr.init({ backend: 'cpu' });
  const model = await AutoModelForCausalLM.fromPretrained(fixture, { dtype });
  model.eval();
  const ids = lr.tensor([loadHFTokenizer(fixture).encode(FIXED)], { dtype: 'int32' });
  const logits = lr.noGrad(() => model.forward(ids).logits);
  const out = (await logits.data()) as Float32Array;
  lr.dispose(logits, ids);
  model.dispose();
  return out;
}

function maxDiff(a: readonly number[], b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe.skipIf(skipReason !== null)(
  `loading models in the page${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const hub = new FakeHub();
    hub.add('org/tiny', filesOf(fixture));
    const tmp = mkdtempSync(join(tmpdir(), 'lowrank-page-models-'));
    const dist = join(tmp, 'dist');
    let server: Server;
    let browser: Browser;
    let page: Page;
    let url = '';
    const pageErrors: string[] = [];

    beforeAll(async () => {
      const hubUrl = await hub.start();
      const { build } = await import('vite');
      await build({
        root: pageRoot,
        configFile: join(pageRoot, 'vite.config.ts'),
        logLevel: 'error',
        build: { outDir: dist, emptyOutDir: true },
      });
      server = await serve(dist, () => hubUrl);
      const address = server.address();
      url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      page = await browser.newPage({ viewport: { width: 1180, height: 900 } });
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') console.log(`[page ${m.type()}] ${m.text()}`);
      });
      page.on('pageerror', (e) => pageErrors.push(e.message));
      // every Blob / File the page reads, by size: a load by range reads slices, never the file
      await page.addInitScript(() => {
        const reads: number[] = [];
        (window as unknown as { blobReads: number[] }).blobReads = reads;
        const arrayBuffer = Blob.prototype.arrayBuffer;
        Blob.prototype.arrayBuffer = function (this: Blob) {
          reads.push(this.size);
          return arrayBuffer.call(this);
        };
      });
      await page.goto(`${url}?backend=cpu&hub=${encodeURIComponent(`${url}hub`)}`);
      await waitState(page, ['ready', 'error'], 60_000);
      expect(await page.textContent('#error')).toBe('');
    }, SLOW);

    afterAll(async () => {
      await browser?.close();
      await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
      await hub.stop();
      rmSync(tmp, { recursive: true, force: true });
    });

    it(
      'a folder picked with webkitdirectory: the Llama model, its tokenizer and targets; logits as in Node; then f16 weights at half the bytes',
      async () => {
        expect(await page.textContent('#model-info')).toMatch(/^Llama pre-trained by lowrank /);
        const blobReads = () => page.evaluate(() => (window as unknown as { blobReads: number[] }).blobReads);
        await page.evaluate(() => {
          (window as unknown as { blobReads: number[] }).blobReads.length = 0;
        });
        await page.setInputFiles('#model-folder', fixture);
        await waitState(page, ['loading'], 10_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await fieldErrors(page)).toEqual([]);
        // model.safetensors was read by range (blobRangeReader over the picked File): the
        // largest read is its largest tensor, no read is the file; the others are the small files
        const weights = readFileSync(join(fixture, 'model.safetensors'));
        const largest = Math.max(
          ...Object.values(safetensorsEntries(new Uint8Array(weights)).tensors).map((t) => t.bytes.length),
        );
        const reads = await blobReads();
        const small = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']
          .filter((f) => existsSync(join(fixture, f)))
          .map((f) => readFileSync(join(fixture, f)).length);
        const ranges = reads.filter((n) => !small.includes(n));
        console.log(
          `[model loading] picked folder: ${reads.length} Blob reads, the largest ${Math.max(...ranges)} B of model.safetensors' ${weights.length} B`,
        );
        expect(ranges).not.toContain(weights.length);
        expect(Math.max(...ranges), 'the largest read: one tensor').toBe(largest);
        expect(ranges.length, 'the 8-byte length, the header, one read per tensor').toBe(
          2 + Object.keys(safetensorsEntries(new Uint8Array(weights)).tensors).length,
        );
        expect(await page.textContent('#model-info')).toMatch(
          /^llama from folder 'base' \(2 layers, width 64, [\d,]+ parameters\)$/,
        );
        expect(
          await page.$$eval('input.target', (els) =>
            els.map((e) => `${(e as HTMLInputElement).value}${(e as HTMLInputElement).checked ? '+' : ''}`),
          ),
        ).toEqual(['q_proj+', 'k_proj', 'v_proj+', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
        expect(await page.textContent('#model-progress')).toMatch(
          /^loaded folder 'base' in [\d.]+ s · base [\d.]+ KiB .* · memory in use [\d.]+ (KiB|MiB)$/,
        );
        const pageLogits = () => api(page, (a) => a.logits('The cat sat on the mat.'));
        expect(maxDiff(await pageLogits(), await nodeLogits('f32'))).toBeLessThan(1e-4);
        // f16: a 16-bit base (the tied table included), the footprint at half of float32
        await page.selectOption('#model-dtype', 'f16');
        await page.setInputFiles('#model-folder', fixture);
        await waitState(page, ['loading'], 10_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await page.textContent('#model-info')).toMatch(/, f16 base\)$/);
        const fp = await api(page, (a) => a.baseFootprint());
        expect(fp.quantized.bytes * 2).toBe(fp.quantized.f32Bytes);
        expect(fp.quantized.f32Bytes).toBe(4 * (512 * 64 + 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128)));
        expect(await page.textContent('#base-memory')).toMatch(/ · f16 [\d.]+ KiB \+ float32 /);
        expect(maxDiff(await pageLogits(), await nodeLogits('f16'))).toBeLessThan(1e-4);
        await page.selectOption('#model-dtype', 'f32');
      },
      SLOW,
    );

    it(
      'a text file picked to train on: its text in the box, counted in tokens; three LoRA steps with the memory shown',
      async () => {
        const text = readFileSync(
          new URL('../../../data/tinyshakespeare/input.txt', import.meta.url),
          'utf8',
        ).slice(0, 3000);
        const file = join(tmp, 'lines.txt');
        writeFileSync(file, text);
        await page.setInputFiles('#text-file', file);
        await page.waitForFunction(() =>
          (document.getElementById('data-hint')?.textContent ?? '').startsWith('lines.txt'),
        );
        expect(await page.inputValue('#text')).toBe(text);
        expect(await page.isChecked('#source-text')).toBe(true);
        const tokens = loadHFTokenizer(fixture).encode(text).length;
        expect(await page.textContent('#data-hint')).toBe(
          `lines.txt: ${tokens.toLocaleString('en-US')} tokens`,
        );
        await page.fill('#name', 'lines');
        await page.fill('#steps', '3');
        await page.fill('#batch', '2');
        await page.fill('#block', '32');
        await page.click('#train');
        await waitState(page, ['training'], 5_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], SLOW - 30_000);
        expect(await fieldErrors(page)).toEqual([]);
        const trained = await api(page, (a) => a.adapters());
        expect(trained.map((t) => [t.name, t.steps, t.targets, t.source])).toEqual([
          ['lines', 3, ['q_proj', 'v_proj'], 'pasted text'],
        ]);
        expect(trained[0].losses.every(([, l]) => Number.isFinite(l) && l > 0)).toBe(true);
        // the memory in use, with the f16 base's weights (the model loaded last) at half their float32 bytes
        expect(await page.textContent('#memory')).toMatch(
          /^memory [\d.]+ (KiB|MiB) \(peak [\d.]+ (KiB|MiB)\) · f16 weights 208\.0 KiB \(float32 416\.0 KiB\)$/,
        );
      },
      SLOW,
    );

    it(
      'by Hub id: downloaded into the Origin Private File System, then found there with no request; logits as in Node',
      async () => {
        await page.fill('#hub-id', 'org/tiny');
        const before = hub.requests.length;
        await page.click('#load-hub');
        await waitState(page, ['loading'], 10_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await fieldErrors(page)).toEqual([]);
        expect(await page.textContent('#hub-store')).toBe('the Origin Private File System');
        const commit = hub.repos.get('org/tiny')!.commit;
        expect(await page.textContent('#model-info')).toBe(
          `llama from Hub org/tiny@${commit.slice(0, 7)} (2 layers, width 64, ${(await api(page, (a) => a.session()!.parameters)).toLocaleString('en-US')} parameters)`,
        );
        expect(hub.requests.slice(before).some((r) => r.path.endsWith('/model.safetensors'))).toBe(true);
        // the blobs on OPFS, by etag
        const blobs = await page.evaluate(async () => {
          const root = await navigator.storage.getDirectory();
          const dir = await (
            await (await root.getDirectoryHandle('lowrank-hub')).getDirectoryHandle('models--org--tiny')
          ).getDirectoryHandle('blobs');
          const names: string[] = [];
          for await (const k of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(k);
          return names.sort();
        });
        expect(blobs.length).toBe(filesOf(fixture).size);
        expect(blobs.some((b) => b.endsWith('.incomplete'))).toBe(false);
        // the f16 model it replaced is freed: no 16-bit weight is live
        expect((await api(page, (a) => a.quantizedMemory())).f16?.bytes ?? 0).toBe(0);
        expect(
          maxDiff(await api(page, (a) => a.logits('The cat sat on the mat.')), await nodeLogits('f32')),
        ).toBeLessThan(1e-4);
        // again: the cache, with no request at all
        const again = hub.requests.length;
        await page.evaluate(() => {
          (window as unknown as { blobReads: number[] }).blobReads.length = 0;
        });
        await page.click('#load-hub');
        await waitState(page, ['loading'], 10_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await fieldErrors(page)).toEqual([]);
        expect(hub.requests.length).toBe(again);
        // the weights read from OPFS by range (HubSnapshot.open: getFile(), then slices)
        const weights = readFileSync(join(fixture, 'model.safetensors'));
        const largest = Math.max(
          ...Object.values(safetensorsEntries(new Uint8Array(weights)).tensors).map((t) => t.bytes.length),
        );
        const reads = await page.evaluate(() => (window as unknown as { blobReads: number[] }).blobReads);
        expect(reads).not.toContain(weights.length);
        expect(Math.max(...reads), 'the largest read: one tensor').toBe(largest);
        // an unknown repository: the error under the controls, the model unchanged
        await page.fill('#hub-id', 'org/nope');
        await page.click('#load-hub');
        await waitState(page, ['loading'], 10_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await page.textContent('#model-error')).toMatch(
          /^the model stays Hub org\/tiny@[0-9a-f]{7}: hub: org\/nope@main: model info: not found/,
        );
        expect(pageErrors).toEqual([]);
      },
      SLOW,
    );

    it(
      'a folder without config.json is refused, naming what it holds',
      async () => {
        const dir = join(tmp, 'not-a-model');
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, 'notes.txt'), 'hello');
        await page.setInputFiles('#model-folder', dir);
        await page.waitForFunction(() => (document.getElementById('model-error')?.textContent ?? '') !== '');
        expect(await page.textContent('#model-error')).toMatch(
          /^the model stays .*: the folder 'not-a-model' has no config\.json at its top .*; it holds notes\.txt$/,
        );
      },
      SLOW,
    );
  },
);
