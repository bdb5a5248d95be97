/**
 * The browser page in real Chromium (Debian's `chromium`, driven by playwright-core; headless
 * Chromium gives a SwiftShader WebGPU adapter with --enable-unsafe-webgpu): builds the page with
 * Vite, serves dist/ on 127.0.0.1, fine-tunes two LoRA adapters on WebGPU through the page's own
 * buttons, and checks the results against Node (same checkpoint, CPU backend). Also runs a
 * subset of the tensor-op property suite in the page. Writes artifacts/screenshot.png.
 * Its pages start with the shipped character-level GPT-2 (`?model=char`: 213k parameters, a
 * step in milliseconds, so the page's controls are tested quickly); the default model, the
 * 5.8M Llama, has default-model.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromPretrained } from '@lowrank/models/node';
import { parseSafetensors } from '@lowrank/nn';
import * as lr from 'lowrank';
import { type Browser, chromium, type Download, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PageApi } from '../src/main.js';
import type { SuiteReport } from '../src/suite/main.js';
import { ISOLATION_HEADERS } from '../vite.config.js';

const pageRoot = fileURLToPath(new URL('..', import.meta.url));
const dist = join(pageRoot, 'dist');
const artifacts = join(pageRoot, 'artifacts');
const checkpoint = fileURLToPath(new URL('../../checkpoints/shakespeare-char', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skipReason = existsSync(CHROMIUM)
  ? null
  : `chromium not found at ${CHROMIUM} (apt-get install -y --no-install-recommends chromium, as .ci/run does)`;
if (skipReason) console.warn(`[browser tests skipped] ${skipReason}`);

/** A fixed input for the logits comparison (characters of the checkpoint's vocabulary). */
const FIXED = 'name : The Eagle | food : French||The Eagle is';
/** WebGPU (float32, other summation orders) against the CPU backend (float64 accumulation). */
const TOL = { atol: 1e-4, rtol: 1e-4 }; // measured: < 1e-5

function maxViolation(got: readonly number[], want: ArrayLike<number>): { worst: number; at: number } {
  expect(got.length).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const excess = Math.abs(got[i] - want[i]) - (TOL.atol + TOL.rtol * Math.abs(want[i]));
    if (!(excess <= worst)) {
      worst = Number.isNaN(excess) ? Number.POSITIVE_INFINITY : excess;
      at = i;
    }
  }
  return { worst, at };
}

function expectClose(got: readonly number[], want: ArrayLike<number>, what: string): void {
  const { worst, at } = maxViolation(got, want);
  let maxAbs = 0;
  for (let i = 0; i < got.length; i++) maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
  console.log(`[browser] ${what}: max |page (WebGPU) − Node (CPU)| = ${maxAbs.toExponential(2)}`);
  expect(worst, `${what}: logit ${at}: page ${got[at]} vs Node ${want[at]}`).toBeLessThanOrEqual(0);
}

function serve(root: string): Promise<Server> {
  const types: Record<string, string> = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript',
    '.css': 'text/css',
    '.json': 'application/json',
    '.txt': 'text/plain; charset=utf-8',
  };
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      // cross-origin isolated, as Vite serves the page (vite.config.ts says why)
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

type PeftFiles = { configJson: string; safetensors: Uint8Array };

/** Node's reference: the same checkpoint on the CPU backend (its linear layers quantized as `bits` asks). */
async function nodeModel(adapter?: PeftFiles, bits?: 'nf4' | 'int8') {
  await lr.init({ backend: 'cpu' });
  const model = await fromPretrained(checkpoint, bits ? { quantize: { bits } } : {});
  model.eval();
  if (adapter) lr.loadAdapterFromBytes(model, adapter.configJson, adapter.safetensors);
  const spec = JSON.parse(readFileSync(join(checkpoint, 'tokenizer.json'), 'utf8')) as {
    chars: string[];
    eos: string;
  };
  const tok = new lr.CharTokenizer(spec.chars, { eos: spec.eos, unknown: ' ' });
  return { model, tok };
}

async function nodeLogits(adapter?: PeftFiles, bits?: 'nf4' | 'int8'): Promise<Float32Array> {
  const { model, tok } = await nodeModel(adapter, bits);
  const ids = lr.tensor([tok.encode(FIXED)], { dtype: 'int32' });
  const logits = lr.noGrad(() => model.forward(ids).logits);
  const out = (await logits.data()) as Float32Array;
  logits.dispose();
  ids.dispose();
  model.dispose();
  return out;
}

/** Float32 bytes of the checkpoint's linear layers (GPT-2's Conv1D weights), counted in Node. */
async function nodeLinearF32Bytes(): Promise<number> {
  const { model } = await nodeModel();
  let bytes = 0;
  for (const [, m] of model.namedModules()) if (m instanceof lr.nn.Conv1D) bytes += m.weight.size * 4;
  model.dispose();
  return bytes;
}

/** Downloads the active adapter through the page's button: PEFT's two files. */
async function downloadAdapter(page: Page): Promise<PeftFiles> {
  const downloads: Download[] = [];
  const got = new Promise<void>((resolve) => {
    page.on('download', (d) => {
      downloads.push(d);
      if (downloads.length === 2) resolve();
    });
  });
  await page.click('#download');
  await got;
  const files = new Map<string, string>();
  const dir = mkdtempSync(join(tmpdir(), 'lowrank-adapter-'));
  for (const d of downloads) {
    const path = join(dir, d.suggestedFilename());
    await d.saveAs(path);
    files.set(d.suggestedFilename(), path);
  }
  expect([...files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  return {
    configJson: readFileSync(files.get('adapter_config.json')!, 'utf8'),
    safetensors: new Uint8Array(readFileSync(files.get('adapter_model.safetensors')!)),
  };
}

/** What the page shows for the base model's continuation of `prompt`, computed in Node. */
async function nodeGeneration(
  prompt: string,
  options: lr.SamplingOptions & { maxNewTokens: number; seed?: number },
) {
  const { model, tok } = await nodeModel();
  const r = await lr.generate(model, tok.encode(prompt), { ...options, eosTokenId: tok.eosTokenId });
  const eos = r.stoppedBy === 'eos';
  return `${prompt}${tok.decode(eos ? r.tokens.slice(0, -1) : r.tokens)}${eos ? ' ⏎ (end of text)' : ''}`;
}

const pageLogits = (page: Page): Promise<number[]> =>
  page.evaluate((text) => (window as unknown as { lowrankPage: PageApi }).lowrankPage.logits(text), FIXED);
const adapters = (page: Page) =>
  page.evaluate(() => (window as unknown as { lowrankPage: PageApi }).lowrankPage.adapters());
const savedNames = (page: Page) =>
  page.evaluate(() => (window as unknown as { lowrankPage: PageApi }).lowrankPage.saved());
const stateLog = (page: Page) =>
  page.evaluate(() => [...(window as unknown as { lowrankPage: PageApi }).lowrankPage.stateLog]);
/** Every message shown next to a control (empty ones are left out). */
const fieldErrors = (page: Page) =>
  page.$$eval('.field-error, #error', (els) => els.map((e) => e.textContent ?? '').filter((t) => t !== ''));

/** Clicks `button` and returns the states the page entered meanwhile (the handler runs within the click). */
async function statesDuringClick(page: Page, button: string): Promise<string[]> {
  const before = (await stateLog(page)).length;
  await page.click(button);
  return (await stateLog(page)).slice(before);
}

/** Bytes from the page's "1.23 MiB". */
function parseBytes(value: string, unit: string): number {
  return Number(value) * 1024 ** ['B', 'KiB', 'MiB', 'GiB'].indexOf(unit);
}
const waitState = (page: Page, states: string[], timeout: number) =>
  page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ''), states, { timeout });

/** Trains one adapter through the page's controls and waits for the run to end. */
async function trainThroughUi(
  page: Page,
  o: { name: string; source: 'e2e' | 'text'; steps: number; text?: string },
): Promise<void> {
  if (o.text !== undefined) await page.fill('#text', o.text);
  await page.check(o.source === 'e2e' ? '#source-e2e' : '#source-text');
  await page.fill('#name', o.name);
  await page.fill('#steps', String(o.steps));
  await page.fill('#batch', '4');
  await page.fill('#block', '64');
  await page.click('#train');
  await waitState(page, ['training'], 5_000).catch(() => undefined);
  await waitState(page, ['ready', 'error'], SLOW - 20_000);
  expect(await fieldErrors(page)).toEqual([]);
}

/** Generous limits: the tests share two cores with the rest of the suite in `pnpm test`. */
const SLOW = 400_000;

describe.skipIf(skipReason !== null)(
  `the browser page in Chromium${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let server: Server;
    let browser: Browser;
    let page: Page;
    let url: string;
    const pageErrors: string[] = [];
    const baseNode: { logits: Float32Array | null } = { logits: null };
    let basePage: number[] = [];
    let e2ePage: number[] = [];

    beforeAll(async () => {
      const { build } = await import('vite');
      await build({ root: pageRoot, configFile: join(pageRoot, 'vite.config.ts'), logLevel: 'error' });
      mkdirSync(artifacts, { recursive: true });
      server = await serve(dist);
      const address = server.address();
      url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--enable-unsafe-webgpu',
          '--no-sandbox',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1180, height: 900 } });
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') console.log(`[page ${m.type()}] ${m.text()}`);
      });
      page.on('pageerror', (e) => pageErrors.push(e.message));
      baseNode.logits = await nodeLogits();
    }, SLOW);

    afterAll(async () => {
      await browser?.close();
      await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    });

    it(
      'loads the checkpoint on WebGPU (navigator.gpu, ?backend=webgpu) and its logits match Node on the CPU',
      async () => {
        // WebGPU asked for: under 'auto' the engine may prefer the CPU to a software adapter
        await page.goto(`${url}?backend=webgpu&model=char`);
        await waitState(page, ['ready', 'error'], 120_000);
        expect(await page.textContent('#error')).toBe('');
        expect(await page.textContent('#backend')).toMatch(/^WebGPU \(/);
        expect(await page.textContent('#active-adapter')).toBe('none (base model)');
        basePage = await pageLogits(page);
        expectClose(basePage, baseNode.logits!, 'base model');
      },
      SLOW,
    );

    // The page's controls (validation, progress, sampling, saved adapters, layout) on the CPU
    // backend, where a step takes milliseconds; in a context of its own (its own IndexedDB).
    let cpu: Page;
    let keptLogits: number[] = [];
    let cpuBase: number[] = [];

    it('refuses bad numbers and an empty module choice next to their controls, before any work starts', async () => {
      const context = await browser.newContext({ viewport: { width: 1180, height: 700 } });
      cpu = await context.newPage();
      cpu.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') console.log(`[cpu page ${m.type()}] ${m.text()}`);
      });
      cpu.on('pageerror', (e) => pageErrors.push(e.message));
      await cpu.goto(`${url}?backend=cpu&model=char`);
      await waitState(cpu, ['ready', 'error'], 30_000);
      expect(await cpu.textContent('#backend')).toMatch(/^CPU /);
      expect(await fieldErrors(cpu)).toEqual([]);
      expect(await savedNames(cpu)).toEqual([]);
      cpuBase = await pageLogits(cpu);
      const progress = await cpu.textContent('#progress');
      // an empty steps field: the message appears as it is typed, and Train starts nothing
      await cpu.fill('#steps', '');
      expect(await cpu.textContent('#steps-error')).toBe(
        'steps is empty: enter a whole number from 1 to 5000',
      );
      expect(await cpu.getAttribute('#steps', 'aria-invalid')).toBe('true');
      expect(await statesDuringClick(cpu, '#train')).toEqual([]);
      expect(await cpu.evaluate(() => document.activeElement?.id)).toBe('steps');
      // a learning rate of 50
      await cpu.fill('#steps', '3');
      expect(await cpu.textContent('#steps-error')).toBe('');
      expect(await cpu.getAttribute('#steps', 'aria-invalid')).toBeNull();
      await cpu.fill('#lr', '50');
      expect(await statesDuringClick(cpu, '#train')).toEqual([]);
      expect(await cpu.textContent('#lr-error')).toMatch(
        /^learning rate must be a number greater than 0 and at most 0\.1 .*; got 50$/,
      );
      expect(await cpu.evaluate(() => document.activeElement?.id)).toBe('lr');
      // a fraction of a batch
      await cpu.fill('#lr', '0.01');
      await cpu.fill('#batch', '2.5');
      expect(await statesDuringClick(cpu, '#train')).toEqual([]);
      expect(await cpu.textContent('#batch-error')).toBe(
        'batch must be a whole number from 1 to 64; got 2.5',
      );
      await cpu.fill('#batch', '4');
      // no module: the message sits under the checkboxes, in view, and nowhere else
      await cpu.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
      for (const box of await cpu.$$('input.target:checked')) await box.uncheck();
      expect(await statesDuringClick(cpu, '#train')).toEqual([]);
      expect(await cpu.textContent('#targets-error')).toBe('choose at least one module to adapt');
      const place = await cpu.evaluate(() => {
        const err = document.getElementById('targets-error')!.getBoundingClientRect();
        const boxes = document.getElementById('targets')!.getBoundingClientRect();
        return { gap: err.top - boxes.bottom, top: err.top, bottom: err.bottom, height: window.innerHeight };
      });
      expect(place.gap, 'the message is right under the checkboxes').toBeGreaterThanOrEqual(0);
      expect(place.gap).toBeLessThan(20);
      expect(place.top, 'the message is in view').toBeGreaterThanOrEqual(0);
      expect(place.bottom).toBeLessThanOrEqual(place.height);
      expect(await fieldErrors(cpu), 'shown there only').toEqual(['choose at least one module to adapt']);
      await cpu.check('input.target[value="c_attn"]');
      await cpu.check('input.target[value="c_proj"]');
      expect(await fieldErrors(cpu)).toEqual([]);
      // nothing ran
      expect(await adapters(cpu)).toEqual([]);
      expect(await cpu.textContent('#progress')).toBe(progress);
      expect(await stateLog(cpu)).not.toContain('training');
    });

    it('shows the ETA and the memory in use (lr.memory(), peak) after every step', async () => {
      await trainThroughUi(cpu, { name: 'kept', source: 'e2e', steps: 3 });
      const [info] = await adapters(cpu);
      expect(info.name).toBe('kept');
      expect(info.losses.length).toBe(3);
      const readouts = await cpu.evaluate(() =>
        (window as unknown as { lowrankPage: PageApi }).lowrankPage.readouts.slice(),
      );
      const weights = await cpu.evaluate(
        () => (window as unknown as { lowrankPage: PageApi }).lowrankPage.session()!.parameters * 4,
      );
      expect(readouts.length).toBe(3);
      readouts.forEach((text, i) => {
        expect(text).toMatch(new RegExp(`^step ${i + 1}/3 · loss \\d\\.\\d+ · [\\d,]+ tokens/s · `));
        if (i < 2) expect(text).toMatch(/ · ETA (\d+ s|\d+ min \d+ s) · /);
        else expect(text).toMatch(/ · done in \d+ s · /);
        const m = /memory ([\d.]+) (B|KiB|MiB|GiB) \(peak ([\d.]+) (B|KiB|MiB|GiB)\)$/.exec(text);
        expect(m, text).not.toBeNull();
        const now = parseBytes(m![1], m![2]);
        const peak = parseBytes(m![3], m![4]);
        expect(now, 'live tensors hold at least the model weights').toBeGreaterThanOrEqual(weights * 0.99);
        expect(peak, 'the peak is at least what is live').toBeGreaterThanOrEqual(now * 0.99);
      });
      expect(await cpu.textContent('#readout')).toBe(readouts[2]);
      keptLogits = await pageLogits(cpu);
    });

    it('samples with the temperature, top-k, top-p and seed from the form, as lr.generate does in Node', async () => {
      expect(await cpu.evaluate(() => document.getElementById('prompt')!.tagName)).toBe('TEXTAREA');
      const prompt = 'ROMEO:\nWhat light through yonder window breaks? It is the east,\nand Juliet';
      await cpu.fill('#prompt', prompt);
      await cpu.fill('#max-tokens', '24');
      await cpu.fill('#temperature', '0.9');
      await cpu.fill('#top-k', '8');
      await cpu.fill('#top-p', '0.9');
      await cpu.fill('#seed', '5');
      expect(await cpu.textContent('#sampling-hint')).toMatch(
        /temperature 0\.9, top-k 8, top-p 0\.9, seed 5/,
      );
      // a top-p outside (0, 1] is refused next to its box, and nothing is generated
      await cpu.fill('#top-p', '1.5');
      expect(await cpu.textContent('#top-p-error')).toMatch(
        /^top-p must be a number greater than 0 and at most 1 .*; got 1\.5$/,
      );
      const shown = await cpu.textContent('#gen-base');
      expect(await statesDuringClick(cpu, '#generate')).toEqual([]);
      expect(await cpu.textContent('#gen-base')).toBe(shown);
      await cpu.fill('#top-p', '0.9');
      expect(await fieldErrors(cpu)).toEqual([]);

      await cpu.click('#generate');
      await waitState(cpu, ['generating'], 5_000).catch(() => undefined);
      await waitState(cpu, ['ready'], 30_000);
      expect(await fieldErrors(cpu)).toEqual([]);
      const sampling = { maxNewTokens: 24, temperature: 0.9, topK: 8, topP: 0.9, seed: 5 };
      const want = await nodeGeneration(prompt, sampling);
      const greedy = await nodeGeneration(prompt, { maxNewTokens: 24, greedy: true });
      expect(want, 'the sampled text differs from the greedy one (else this test could not fail)').not.toBe(
        greedy,
      );
      expect(await nodeGeneration(prompt, { ...sampling, seed: 6 }), 'the seed matters').not.toBe(want);
      expect(await cpu.textContent('#gen-base')).toBe(want);
      expect((await cpu.textContent('#gen-adapter'))?.startsWith(prompt)).toBe(true);
      await cpu.fill('#temperature', '0');
    });

    it('fits a 420 px wide screen: no element reaches past the viewport', async () => {
      await cpu.setViewportSize({ width: 420, height: 900 });
      await cpu.fill('#lr', '50'); // a long message next to a control, in the layout too
      try {
        const measure = await cpu.evaluate(() => {
          const root = document.documentElement;
          const width = root.clientWidth;
          const wide = [...document.querySelectorAll<HTMLElement>('body *')]
            .filter((el) => el.getClientRects().length > 0 && el.getBoundingClientRect().right > width + 0.5)
            .map(
              (el) =>
                `${el.tagName.toLowerCase()}#${el.id}.${el.className} right=${el.getBoundingClientRect().right}`,
            );
          return { scrollWidth: root.scrollWidth, clientWidth: width, wide };
        });
        expect(measure.clientWidth).toBeLessThanOrEqual(420);
        expect(measure.wide).toEqual([]);
        expect(measure.scrollWidth).toBeLessThanOrEqual(measure.clientWidth);
        expect(await cpu.textContent('#lr-error')).not.toBe('');
        await cpu.screenshot({ path: join(artifacts, 'narrow.png'), fullPage: true });
      } finally {
        await cpu.fill('#lr', '0.01');
        await cpu.setViewportSize({ width: 1180, height: 900 });
      }
    });

    it('keeps trained adapters across reloads (IndexedDB): listed, loaded with the same logits, deleted', async () => {
      await trainThroughUi(cpu, { name: 'second', source: 'e2e', steps: 1 });
      expect(await savedNames(cpu)).toEqual(['kept', 'second']);
      await cpu.reload();
      await waitState(cpu, ['ready', 'error'], 30_000);
      expect(await fieldErrors(cpu)).toEqual([]);
      expect(await adapters(cpu), 'nothing is loaded by itself').toEqual([]);
      expect(await savedNames(cpu)).toEqual(['kept', 'second']);
      expect(await cpu.$$eval('#adapters .adapter-row', (rows) => rows.map((r) => r.id))).toEqual([
        'row-base',
        'row-kept',
        'row-second',
      ]);
      expect(await cpu.textContent('#saved-kept')).toBe('saved in this browser, not loaded');
      expect(await cpu.textContent('#row-kept')).toMatch(
        /kept \(r=8, α=16, c_attn\+c_proj; E2E .* after 3 steps/,
      );
      expect(await cpu.isDisabled('#adapter-kept'), 'not loaded: cannot be chosen yet').toBe(true);
      expect(await cpu.inputValue('#name'), 'a free name is suggested').not.toMatch(/^(kept|second)$/);
      expect(await pageLogits(cpu)).toEqual(cpuBase);

      // a saved adapter that was never loaded: deleted from the browser
      await cpu.click('#delete-second');
      await cpu.waitForSelector('#row-second', { state: 'detached' });
      expect(await savedNames(cpu)).toEqual(['kept']);
      // loaded: the same weights as before the reload
      await cpu.click('#load-kept');
      expect(await cpu.textContent('#active-adapter')).toMatch(/^kept \(r=8/);
      expect(await cpu.textContent('#saved-kept')).toBe('saved in this browser');
      expect(await pageLogits(cpu), 'the saved weights are the trained ones').toEqual(keptLogits);
      // loaded and active: deleted from the model and from the browser
      await cpu.click('#delete-kept');
      await cpu.waitForSelector('#row-kept', { state: 'detached' });
      expect(await cpu.textContent('#active-adapter')).toBe('none (base model)');
      expect(await pageLogits(cpu)).toEqual(cpuBase);
      expect(await adapters(cpu)).toEqual([]);

      await cpu.reload();
      await waitState(cpu, ['ready', 'error'], 30_000);
      expect(await savedNames(cpu)).toEqual([]);
      expect(await cpu.$$eval('#adapters .adapter-row', (rows) => rows.map((r) => r.id))).toEqual([
        'row-base',
      ]);
      expect(pageErrors).toEqual([]);
      await cpu.context().close();
    });

    it('quantizes the base (NF4, int8) and trains LoRA adapters on it; back to float32 reloads the original weights', async () => {
      const context = await browser.newContext({
        acceptDownloads: true,
        viewport: { width: 1180, height: 900 },
      });
      const q = await context.newPage();
      q.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning')
          console.log(`[qlora page ${m.type()}] ${m.text()}`);
      });
      q.on('pageerror', (e) => pageErrors.push(e.message));
      await q.goto(`${url}?backend=cpu&model=char`);
      await waitState(q, ['ready', 'error'], 30_000);
      expect(await q.evaluate(() => window.crossOriginIsolated), 'served with COOP/COEP').toBe(true);
      expect(await q.textContent('#backend')).not.toMatch(/isolated/);
      expect(await q.inputValue('#quant')).toBe('none');
      expect(await q.textContent('#base-memory')).toMatch(
        /^base [\d.]+ KiB \(float32: [\d.]+ KiB\) · no quantized layers · float32 /,
      );
      const f32Base = await pageLogits(q);
      const linearF32 = await nodeLinearF32Bytes();
      expect(linearF32).toBeGreaterThan(0);

      /** Picks a storage for the base and waits for the page to rebuild it; checks the readout next to the control. */
      const choose = async (bits: 'nf4' | 'int8', maxRatio: number) => {
        const before = (await stateLog(q)).length;
        await q.selectOption('#quant', bits);
        await waitState(q, ['ready'], 30_000);
        expect((await stateLog(q)).slice(before)).toEqual(['quantizing', 'ready']);
        expect(await q.textContent('#quant-error')).toBe('');
        const text = (await q.textContent('#base-memory')) ?? '';
        const m =
          /quantized layers ([\d.]+) (B|KiB|MiB|GiB), ([\d.]+)× of their float32 ([\d.]+) (B|KiB|MiB|GiB) · (.*)$/.exec(
            text,
          );
        expect(m, text).not.toBeNull();
        const bytes = parseBytes(m![1], m![2]);
        const f32 = parseBytes(m![4], m![5]);
        // every linear layer (and nothing else: not the tied embeddings) is quantized
        expect(f32, 'the float32 size of the quantized layers: every Conv1D weight').toBe(linearF32);
        expect(bytes, `${bits}: the quantized layers' bytes next to their float32 bytes`).toBeLessThanOrEqual(
          maxRatio * f32,
        );
        expect(m![6]).toMatch(new RegExp(`^${bits} [\\d.]+ KiB \\+ float32 [\\d.]+ KiB`));
        const fp = await q.evaluate(() =>
          (window as unknown as { lowrankPage: PageApi }).lowrankPage.baseFootprint(),
        );
        expect(fp.quantized.f32Bytes).toBe(linearF32);
        expect(fp.quantized.bytes / fp.quantized.f32Bytes).toBeLessThanOrEqual(maxRatio);
        expect(fp.bytes, 'the base takes less than in float32').toBeLessThan(fp.f32Bytes);
        // the replaced base's quantized weights are freed: only this format is live
        const live = await q.evaluate(() =>
          (window as unknown as { lowrankPage: PageApi }).lowrankPage.quantizedMemory(),
        );
        expect(Object.keys(live)).toEqual([bits]);
        expect(live[bits].bytes).toBe(fp.quantized.bytes);
        // the page's quantized base is Node's quantized base (fromPretrained's quantize option)
        const logits = await pageLogits(q);
        expect(
          maxViolation(logits, f32Base).worst,
          `${bits} rounds the weights: the logits move`,
        ).toBeGreaterThan(0);
        expectClose(logits, await nodeLogits(undefined, bits), `${bits} base`);
        return logits;
      };

      const nf4Base = await choose('nf4', 0.2);
      await trainThroughUi(q, { name: 'q4', source: 'e2e', steps: 3 });
      const [q4] = await adapters(q);
      expect(q4.name).toBe('q4');
      expect(q4.base).toBe('nf4');
      expect(q4.losses.length).toBe(3);
      for (const [, loss] of q4.losses) expect(Number.isFinite(loss), `loss ${loss}`).toBe(true);
      expect(Number.isFinite(q4.evalAfter)).toBe(true);
      expect(await q.textContent('#active-adapter')).toMatch(/^q4 \(r=8, .*; trained on an NF4 base\)$/);
      const readouts = await q.evaluate(() =>
        (window as unknown as { lowrankPage: PageApi }).lowrankPage.readouts.slice(),
      );
      expect(readouts.at(-1)).toMatch(/ · nf4 weights [\d.]+ KiB \(float32 [\d.]+ KiB\)$/);
      const q4Logits = await pageLogits(q);
      expect(
        maxViolation(q4Logits, nf4Base).worst,
        "the adapter changes the quantized base's logits",
      ).toBeGreaterThan(0);
      // plain PEFT files: kept in IndexedDB, and downloaded they load in Node onto Node's NF4 base
      expect(await savedNames(q)).toEqual(['q4']);
      expect(await q.textContent('#saved-q4')).toBe('saved in this browser');
      const q4Files = await downloadAdapter(q);
      expect((JSON.parse(q4Files.configJson) as { peft_type: string }).peft_type).toBe('LORA');
      expect(
        Object.keys(parseSafetensors(q4Files.safetensors).tensors).every((k) => /lora_[AB]\.weight$/.test(k)),
      ).toBe(true);
      expectClose(q4Logits, await nodeLogits(q4Files, 'nf4'), "adapter 'q4' on NF4, loaded in Node");

      await q.check('#adapter-base');
      expect(await pageLogits(q)).toEqual(nf4Base);

      // int8: rebuilt from the float32 weights (not from NF4's rounding); 'q4' moves onto it
      const int8Base = await choose('int8', 0.3);
      expect(int8Base).not.toEqual(nf4Base);
      expect(await q.textContent('#active-adapter')).toBe('none (base model)');
      expect(await q.isDisabled('#adapter-q4'), "'q4' is still loaded").toBe(false);
      await trainThroughUi(q, { name: 'q8', source: 'e2e', steps: 2 });
      const q8 = (await adapters(q)).find((a) => a.name === 'q8')!;
      expect(q8.base).toBe('int8');
      expect(q8.losses.length).toBe(2);
      for (const [, loss] of q8.losses) expect(Number.isFinite(loss), `loss ${loss}`).toBe(true);
      const q8Logits = await pageLogits(q);
      expect(
        maxViolation(q8Logits, int8Base).worst,
        "the adapter changes the int8 base's logits",
      ).toBeGreaterThan(0);
      expect(await savedNames(q)).toEqual(['q4', 'q8']);

      // back to float32: the checkpoint's weights again, bit for bit; the adapters keep their
      // weights, and the active one stays active
      const before = (await stateLog(q)).length;
      await q.selectOption('#quant', 'none');
      await waitState(q, ['ready'], 30_000);
      expect((await stateLog(q)).slice(before)).toEqual(['quantizing', 'ready']);
      expect(await q.textContent('#base-memory')).toMatch(/ · no quantized layers · /);
      expect(
        await q.evaluate(() => (window as unknown as { lowrankPage: PageApi }).lowrankPage.quantizedMemory()),
      ).toEqual({});
      expect(await q.textContent('#active-adapter')).toMatch(/^q8 .*; trained on an int8 base\)$/);
      await q.check('#adapter-base');
      expect(await pageLogits(q), 'the original float32 base').toEqual(f32Base);
      await q.check('#adapter-q4');
      expectClose(
        await pageLogits(q),
        await nodeLogits(q4Files),
        "adapter 'q4' on the float32 base, in Node",
      );
      expect(await fieldErrors(q)).toEqual([]);
      expect(pageErrors).toEqual([]);
      await context.close();
    });

    it(
      'fine-tunes a LoRA adapter on the E2E task: the loss decreases',
      async () => {
        await trainThroughUi(page, { name: 'e2e', source: 'e2e', steps: 6 });
        const [info] = await adapters(page);
        expect(info.name).toBe('e2e');
        expect(info.losses.length).toBe(6);
        expect(info.evalAfter, 'held-out loss').toBeLessThan(info.evalBefore - 0.05);
        expect(info.losses.at(-1)![1], 'training loss').toBeLessThan(info.losses[0][1]);
        expect(info.tokensPerSecond).toBeGreaterThan(0);
        expect(await page.textContent('#active-adapter')).toMatch(/^e2e \(r=8/);
        expect(await page.textContent('#readout')).toMatch(/step 6\/6 · loss \d\.\d+ · [\d,]+ tokens\/s/);
        e2ePage = await pageLogits(page);
        const { worst } = maxViolation(e2ePage, baseNode.logits!);
        expect(worst, 'the adapter changes the logits').toBeGreaterThan(0);
      },
      SLOW,
    );

    it(
      'trains a second adapter on pasted text and switches between the two and the base model',
      async () => {
        const text = 'The cat sat on the mat. The dog sat on the log. '.repeat(20);
        await trainThroughUi(page, { name: 'pasted', source: 'text', steps: 3, text });
        const list = await adapters(page);
        expect(list.map((a) => a.name)).toEqual(['e2e', 'pasted']);
        expect(list[1].source).toBe('pasted text');
        expect(list[1].evalAfter).toBeLessThan(list[1].evalBefore);
        expect(await page.textContent('#active-adapter')).toMatch(/^pasted /);
        const pasted = await pageLogits(page);

        await page.check('#adapter-e2e');
        expect(await page.textContent('#active-adapter')).toMatch(/^e2e /);
        expect(await pageLogits(page)).toEqual(e2ePage);
        await page.check('#adapter-base');
        expect(await page.textContent('#active-adapter')).toBe('none (base model)');
        expect(await pageLogits(page)).toEqual(basePage);
        await page.check('#adapter-pasted');
        expect(await pageLogits(page)).toEqual(pasted);
        expect(pasted).not.toEqual(e2ePage);
      },
      SLOW,
    );

    it('downloads the adapter in PEFT format, and it loads in Node with the same logits', async () => {
      await page.check('#adapter-e2e');
      const { configJson, safetensors } = await downloadAdapter(page);
      const config = JSON.parse(configJson) as Record<string, unknown>;
      expect(config.peft_type).toBe('LORA');
      expect(config.r).toBe(8);
      const keys = Object.keys(parseSafetensors(safetensors).tensors);
      expect(keys.some((k) => k.includes('c_attn.lora_A.weight'))).toBe(true);
      expectClose(e2ePage, await nodeLogits({ configJson, safetensors }), "adapter 'e2e' loaded in Node");
    });

    it(
      'generates before/after and saves a screenshot',
      async () => {
        await page.fill('#max-tokens', '24');
        await page.click('#generate');
        await waitState(page, ['generating'], 5_000).catch(() => undefined);
        await waitState(page, ['ready'], SLOW - 20_000);
        expect(await page.textContent('#error')).toBe('');
        const before = await page.textContent('#gen-base');
        const after = await page.textContent('#gen-adapter');
        const prompt = await page.inputValue('#prompt');
        expect(before?.startsWith(prompt)).toBe(true);
        expect(after?.startsWith(prompt)).toBe(true);
        expect(after!.length).toBeGreaterThan(prompt.length);
        await page.screenshot({ path: join(artifacts, 'screenshot.png'), fullPage: true });
        expect(pageErrors).toEqual([]);
      },
      SLOW,
    );

    it(
      'runs a subset of the tensor-op property suite in the page on WebGPU',
      async () => {
        await page.goto(`${url}suite.html?backend=webgpu`);
        await waitState(page, ['done', 'error'], SLOW - 20_000);
        const report = await page.evaluate(
          () => (window as unknown as { suiteReport?: SuiteReport }).suiteReport,
        );
        expect(report, (await page.textContent('#summary')) ?? '').toBeDefined();
        expect(report!.device).toBe('webgpu');
        for (const s of report!.skipped) console.log(`[op suite in page] skipped ${s}`);
        const failed = report!.results.filter((r) => !r.ok);
        expect(failed.map((r) => `${r.name}: ${r.error}`)).toEqual([]);
        expect(report!.results.length).toBeGreaterThanOrEqual(40);
      },
      SLOW,
    );

    it('falls back to the CPU, and says so, where navigator.gpu is missing', async () => {
      const context = await browser.newContext();
      await context.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
      });
      const p = await context.newPage();
      await p.goto(url);
      await waitState(p, ['ready', 'error'], 30_000);
      expect(await p.textContent('#error')).toBe('');
      expect(await p.textContent('#backend')).toMatch(/^CPU .*fallback: WebGPU unavailable/);
      // with no ?model=, the page's default: the shipped Llama
      expect(await p.textContent('#model-info')).toMatch(
        /^Llama pre-trained by lowrank .*5,770,496 parameters/,
      );
      await context.close();
    });
  },
);
