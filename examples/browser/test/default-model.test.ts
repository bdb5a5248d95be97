/**
 * The page's offline default in real Chromium (Debian's `chromium`, playwright-core): the shipped
 * 5.8M Llama (examples/checkpoints/llama-shakespeare-brown: f16 weights, a 4096-token byte-level
 * BPE tokenizer.json read through @huggingface/tokenizers) loads with no ?model= and no network,
 * LoRA-fine-tunes on E2E through the page's buttons with the demo's settings (every projection,
 * r 8, α 16, lr 1e-2, the loss on the references only) at a small batch, and generates for test
 * MRs. Everything is checked against the same run in Node (the CPU backend): the base's logits,
 * each step's training loss, the held-out loss before and after, and the greedy replies decoded
 * by the real tokenizer. Then on an NF4 base (QLoRA): every Linear weight quantized at ≈0.14× its
 * float32 bytes, the memory shown by storage type, and LoRA training on it as Node's NF4 run does.
 * On WebGPU (SwiftShader: a 64-token step takes ≈5 s here) the run is the smallest that still
 * tests something; on the CPU backend it is larger. The page is built into a folder of its own,
 * so this file and the other browser tests can run side by side.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, loadHFTokenizer } from '@lowrank/models/node';
import * as lr from 'lowrank';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bannedNext, greedyByLength } from '../../e2e/batched-greedy.js';
import type { PageApi } from '../src/main.js';
import { ISOLATION_HEADERS } from '../vite.config.js';

const pageRoot = fileURLToPath(new URL('..', import.meta.url));
const checkpoint = fileURLToPath(new URL('../../checkpoints/llama-shakespeare-brown', import.meta.url));
const e2eDir = fileURLToPath(new URL('../../../data/e2e', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skipReason = existsSync(CHROMIUM) ? null : `chromium not found at ${CHROMIUM}`;
const SLOW = 300_000;
/** Every projection of every block, as the demo (and the page, for this model) adapts. */
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
/** An E2E prompt (its tokens are BPE pieces: the page must use the checkpoint's tokenizer.json). */
const FIXED = 'name : The Eagle | eatType : coffee shop | food : French||The Eagle is';

interface RunSettings {
  steps: number;
  batch: number;
  block: number;
}

/** What Node gets for the page's run: the losses, the held-out loss before/after, greedy replies. */
interface NodeRun {
  baseLogits: Float32Array;
  losses: number[];
  evalBefore: number;
  evalAfter: number;
  /** What the page shows for each MR: base (before) and adapter (after). */
  replies: { base: string; adapter: string }[];
  /** `modelFootprint` of the base before LoRA. */
  footprint: lr.ModelFootprint;
}

/** Float32 bytes of the checkpoint's Linear weights (every projection; the tied lm_head is the embedding), counted in Node. */
async function nodeLinearF32Bytes(): Promise<number> {
  await lr.init({ backend: 'cpu' });
  const model = await AutoModelForCausalLM.fromPretrained(checkpoint);
  let bytes = 0;
  for (const [name, m] of model.namedModules())
    if (m instanceof lr.nn.Linear && name !== 'lm_head') bytes += 4 * m.weight.size;
  model.dispose();
  return bytes;
}

/**
 * The page's default flow in Node on the CPU backend, written out from the library's pieces:
 * the same checkpoint, tokenizer, E2E streams and masks, LoRA config, trainer options and
 * generation options as session.ts uses (and examples/demo.ts).
 */
async function nodeRun(s: RunSettings, mrs: string[], maxNewTokens: number, bits?: 'nf4'): Promise<NodeRun> {
  await lr.init({ backend: 'cpu' });
  const model = await AutoModelForCausalLM.fromPretrained(checkpoint, bits ? { quantize: { bits } } : {});
  model.eval();
  try {
    const tok = loadHFTokenizer(checkpoint);
    const footprint = lr.modelFootprint(model);
    const ids = lr.tensor([tok.encode(FIXED)], { dtype: 'int32' });
    const out = lr.noGrad(() => model.forward(ids).logits);
    const baseLogits = (await out.data()) as Float32Array;
    out.dispose();
    ids.dispose();
    const split = (f: string) => lr.parseE2E(readFileSync(join(e2eDir, f), 'utf8').replace(/\r/g, ''));
    const train = lr.e2eStream(split('valid.txt'), (t) => tok.encode(t));
    const test = lr.e2eStream(split('test.txt'), (t) => tok.encode(t));
    const lora = lr.applyLora(model, { r: 8, loraAlpha: 16, targetModules: ALL, seed: 0 }, 'e2e');
    const evalOptions = {
      batches: 2,
      batchSize: s.batch,
      blockSize: s.block,
      seed: 7,
      mask: test.targetMask,
    };
    const evalBefore = await lr.evaluateLM(model, test.tokens, evalOptions);
    const trainer = new lr.LMTrainer(model, lora.trainableParameters(), {
      steps: s.steps,
      batchSize: s.batch,
      blockSize: s.block,
      lr: 0.01,
      warmupSteps: Math.max(1, Math.floor(s.steps / 10)),
      weightDecay: 0,
      seed: 0,
      compile: true,
    });
    const losses: number[] = [];
    for (let i = 0; i < s.steps; i++) losses.push(await trainer.trainStep(train.tokens, train.targetMask));
    model.eval();
    const evalAfter = await lr.evaluateLM(model, test.tokens, evalOptions);
    // a reply ends at a token holding a newline, or at <|endoftext|>
    const stops = [0];
    for (let id = 1; id < tok.vocabSize; id++) if (tok.decode([id]).includes('\n')) stops.push(id);
    // the demo's decoding: greedy, no 4-gram twice in a reply
    const reply = async (mr: string): Promise<string> => {
      const prompt = lr.e2ePrompt(mr);
      const [tokens] = await greedyByLength(model, [tok.encode(prompt)], {
        maxNewTokens,
        stopIds: new Set(stops),
        noRepeatNgram: 4,
      });
      for (let i = 3; i < tokens.length; i++)
        expect(bannedNext(tokens.slice(0, i), 4).has(tokens[i]), `a repeated 4-gram at ${i}`).toBe(false);
      const eos = tokens.length < maxNewTokens;
      return `${prompt}${tok.decode(tokens)}${eos ? ' ⏎ (end of text)' : ''}`;
    };
    const replies: NodeRun['replies'] = [];
    for (const mr of mrs) {
      const adapter = await reply(mr);
      const base = await lora.disableAdapters(() => reply(mr));
      replies.push({ base, adapter });
    }
    return { baseLogits, losses, evalBefore, evalAfter, replies, footprint };
  } finally {
    model.dispose();
  }
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

const adapters = (page: Page) =>
  page.evaluate(() => (window as unknown as { lowrankPage: PageApi }).lowrankPage.adapters());
const waitState = (page: Page, states: string[], timeout: number) =>
  page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ''), states, { timeout });
const fieldErrors = (page: Page) =>
  page.$$eval('.field-error, #error', (els) => els.map((e) => e.textContent ?? '').filter((t) => t !== ''));

/** The largest |a − b| over two arrays of one length. */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
}

/** Trains 'e2e' on the E2E task through the page's controls, with the page's default modules. */
async function trainE2E(page: Page, s: RunSettings): Promise<void> {
  await page.check('#source-e2e');
  await page.fill('#name', 'e2e');
  await page.fill('#steps', String(s.steps));
  await page.fill('#batch', String(s.batch));
  await page.fill('#block', String(s.block));
  await page.click('#train');
  await waitState(page, ['training'], 5_000).catch(() => undefined);
  await waitState(page, ['ready', 'error'], SLOW - 30_000);
  expect(await fieldErrors(page)).toEqual([]);
}

/** Generates for the page's i-th test MR (the 'test MR' select), greedy; the two texts shown. */
async function generateFor(
  page: Page,
  i: number,
  maxTokens: number,
): Promise<{ base: string; adapter: string }> {
  await page.selectOption('#example-mr', String(i));
  await page.fill('#max-tokens', String(maxTokens));
  await page.fill('#temperature', '0');
  await page.click('#generate');
  await waitState(page, ['generating'], 5_000).catch(() => undefined);
  await waitState(page, ['ready', 'error'], SLOW - 30_000);
  expect(await fieldErrors(page)).toEqual([]);
  return {
    base: (await page.textContent('#gen-base')) ?? '',
    adapter: (await page.textContent('#gen-adapter')) ?? '',
  };
}

/**
 * The page's default flow on one backend: the Llama is what loads, its logits are Node's, a
 * LoRA run gives Node's losses, the held-out loss goes down, and the replies are Node's.
 */
async function defaultFlow(
  page: Page,
  s: RunSettings,
  o: { mrs: number; maxTokens: number; logitsTol: number; lossTol: number; bits?: 'nf4' },
): Promise<NodeRun> {
  expect(await page.textContent('#model-info')).toMatch(
    /^Llama pre-trained by lowrank on Tiny Shakespeare \+ the Brown Corpus \(6 layers, width 256, byte-level BPE of 4096 tokens, 5,770,496 parameters, val loss 4\.23 \/ 3\.89 nats\/token\)$/,
  );
  expect(
    await page.$$eval('input.target', (els) =>
      els.filter((e) => (e as HTMLInputElement).checked).map((e) => (e as HTMLInputElement).value),
    ),
    'every projection, as the demo',
  ).toEqual(ALL);
  expect(await page.isChecked('#no-repeat'), "the demo's decoding: no repeated 4-gram").toBe(true);
  expect(await page.isChecked('#stop-line')).toBe(true);
  const testMrs = await page.$$eval('#example-mr option', (els) =>
    els.slice(1).map((e) => e.textContent ?? ''),
  );
  expect(testMrs.length).toBeGreaterThanOrEqual(o.mrs);
  const t0 = performance.now();
  const node = await nodeRun(s, testMrs.slice(0, o.mrs), o.maxTokens, o.bits);
  const nodeSeconds = (performance.now() - t0) / 1000;

  const pageLogits = await page.evaluate(
    (text) => (window as unknown as { lowrankPage: PageApi }).lowrankPage.logits(text),
    FIXED,
  );
  const logitsDiff = maxDiff(pageLogits, node.baseLogits);
  expect(logitsDiff, 'base logits, page vs Node').toBeLessThanOrEqual(o.logitsTol);

  const t1 = performance.now();
  await trainE2E(page, s);
  const trainSeconds = (performance.now() - t1) / 1000;
  const [info] = await adapters(page);
  expect(info.name).toBe('e2e');
  expect(info.targets).toEqual(ALL);
  const losses = info.losses.map(([, l]) => l);
  const lossDiff = maxDiff(losses, node.losses);
  console.log(
    `[default model] ${s.steps} steps B=${s.batch} T=${s.block}: page losses ${losses.map((l) => l.toFixed(4)).join(' ')}` +
      ` (max |page − Node| ${lossDiff.toExponential(2)}), held-out ${info.evalBefore.toFixed(3)} → ${info.evalAfter.toFixed(3)}` +
      ` (Node ${node.evalBefore.toFixed(3)} → ${node.evalAfter.toFixed(3)}); base logits max diff ${logitsDiff.toExponential(2)};` +
      ` page training ${trainSeconds.toFixed(1)} s, Node run ${nodeSeconds.toFixed(1)} s`,
  );
  expect(lossDiff, 'training losses, page vs Node').toBeLessThanOrEqual(o.lossTol);
  expect(Math.abs(info.evalBefore - node.evalBefore)).toBeLessThanOrEqual(o.lossTol);
  expect(Math.abs(info.evalAfter - node.evalAfter)).toBeLessThanOrEqual(o.lossTol);
  // an untrained E2E: ≈8.2 nats/token on the references (ln 4096 = 8.3); 3 steps take ≈0.4–1.1 off
  expect(info.evalBefore).toBeGreaterThan(7);
  expect(info.evalAfter, 'the held-out loss goes down').toBeLessThan(info.evalBefore - 0.2);

  for (let i = 0; i < o.mrs; i++) {
    const shown = await generateFor(page, i, o.maxTokens);
    console.log(`[default model] ${JSON.stringify(shown)}`);
    expect(shown.base.startsWith(`${testMrs[i]}||`)).toBe(true);
    expect(shown.adapter.length, 'the adapter wrote something').toBeGreaterThan(testMrs[i].length + 2);
    expect(shown).toEqual(node.replies[i]);
  }
  expect(
    node.replies.some((r) => r.adapter !== r.base),
    'the adapter changes a reply',
  ).toBe(true);
  return node;
}

describe.skipIf(skipReason !== null)(
  `the page's default model (the shipped Llama) in Chromium${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let server: Server;
    let browser: Browser;
    let url: string;
    const tmp = mkdtempSync(join(tmpdir(), 'lowrank-default-page-'));
    const pageErrors: string[] = [];

    beforeAll(async () => {
      const { build } = await import('vite');
      const dist = join(tmp, 'dist');
      await build({
        root: pageRoot,
        configFile: join(pageRoot, 'vite.config.ts'),
        logLevel: 'error',
        build: { outDir: dist, emptyOutDir: true },
      });
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
    }, SLOW);

    afterAll(async () => {
      await browser?.close();
      await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
      rmSync(tmp, { recursive: true, force: true });
    });

    async function open(query: string): Promise<Page> {
      const context = await browser.newContext({ viewport: { width: 1180, height: 900 } });
      const page = await context.newPage();
      page.on('console', (m) => {
        if (m.type() === 'error' && !m.text().includes('404')) console.log(`[page ${m.type()}] ${m.text()}`);
      });
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(`${url}${query}`);
      await waitState(page, ['ready', 'error'], 120_000);
      expect(await page.textContent('#error')).toBe('');
      return page;
    }

    it(
      'on the CPU backend: loads the Llama, fine-tunes it on E2E as Node does, replies to 3 test MRs as Node',
      async () => {
        const page = await open('?backend=cpu');
        expect(await page.textContent('#backend')).toMatch(/^CPU /);
        await defaultFlow(
          page,
          { steps: 4, batch: 4, block: 64 },
          { mrs: 3, maxTokens: 32, logitsTol: 1e-4, lossTol: 1e-4 },
        );
        expect(pageErrors).toEqual([]);
        await page.context().close();
      },
      SLOW,
    );

    it(
      'on the CPU backend with an NF4 base (QLoRA): every Linear weight at ≈0.14× its float32 bytes, shown by storage type; LoRA trains on it as in Node',
      async () => {
        const page = await open('?backend=cpu');
        const linearF32 = await nodeLinearF32Bytes();
        // 6 blocks × (q 256², k and v 256·128, o 256², gate, up and down 256·768) float32 weights
        expect(linearF32).toBe(4 * 6 * (2 * 256 * 256 + 2 * 256 * 128 + 3 * 256 * 768));
        const before = await page.textContent('#base-memory');
        expect(before).toMatch(
          /^base [\d.]+ MiB \(float32: [\d.]+ MiB\) · no quantized layers · float32 [\d.]+ MiB$/,
        );
        await page.selectOption('#quant', 'nf4');
        await waitState(page, ['quantizing'], 5_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await fieldErrors(page)).toEqual([]);
        const fp = await page.evaluate(() =>
          (window as unknown as { lowrankPage: PageApi }).lowrankPage.baseFootprint(),
        );
        // NF4 (QLoRA): a 4-bit code per weight and a float32 absmax per block of 64 weights,
        // 4.5 bits a weight: 0.1406× of float32; every Linear weight, nothing else
        expect(fp.quantized.f32Bytes, 'the quantized weights are exactly the Linear weights').toBe(linearF32);
        const ratio = fp.quantized.bytes / fp.quantized.f32Bytes;
        console.log(
          `[default model] NF4 base: Linear weights ${fp.quantized.bytes} B of ${linearF32} B float32 (${ratio.toFixed(4)}×); base ${fp.bytes} B of ${fp.f32Bytes} B`,
        );
        expect(ratio).toBeGreaterThanOrEqual(0.14);
        expect(ratio).toBeLessThanOrEqual(0.2);
        // by storage type: the text next to the control, and the live memory (lr.memory().quantized)
        const text = (await page.textContent('#base-memory')) ?? '';
        const m =
          /^base ([\d.]+) MiB \(float32: ([\d.]+) MiB\) · quantized layers ([\d.]+) MiB, ([\d.]+)× of their float32 ([\d.]+) MiB · nf4 ([\d.]+) MiB \+ float32 ([\d.]+) MiB$/.exec(
            text,
          );
        expect(m, text).not.toBeNull();
        const mib = (i: number) => Number(m![i]) * 2 ** 20;
        expect(Math.abs(mib(3) - fp.quantized.bytes)).toBeLessThan(0.01 * 2 ** 20);
        expect(Math.abs(mib(5) - linearF32)).toBeLessThan(0.01 * 2 ** 20);
        expect(Number(m![4])).toBeCloseTo(ratio, 3);
        expect(Math.abs(mib(6) + mib(7) - fp.bytes)).toBeLessThan(0.02 * 2 ** 20);
        const live = await page.evaluate(() =>
          (window as unknown as { lowrankPage: PageApi }).lowrankPage.quantizedMemory(),
        );
        expect(Object.keys(live)).toEqual(['nf4']);
        expect(live.nf4.bytes).toBe(fp.quantized.bytes);

        const node = await defaultFlow(
          page,
          { steps: 3, batch: 4, block: 64 },
          { mrs: 1, maxTokens: 24, logitsTol: 1e-4, lossTol: 1e-4, bits: 'nf4' },
        );
        expect(node.footprint.quantized).toEqual(fp.quantized);
        const [info] = await adapters(page);
        expect(info.base).toBe('nf4');
        const readouts = await page.evaluate(() =>
          (window as unknown as { lowrankPage: PageApi }).lowrankPage.readouts.slice(),
        );
        expect(readouts.at(-1)).toMatch(/ · nf4 weights [\d.]+ MiB \(float32 [\d.]+ MiB\)$/);
        expect(pageErrors).toEqual([]);
        await page.context().close();
      },
      SLOW,
    );

    it(
      "merges a saved adapter into a fresh base (issue 17's chain in the page): the merged model's logits are the adapter's within 1e-4, greedy replies the same; unmerge gives the base back bit for bit",
      async () => {
        const page = await open('?backend=cpu');
        const logits = () =>
          page.evaluate(
            (text) => (window as unknown as { lowrankPage: PageApi }).lowrankPage.logits(text),
            FIXED,
          );
        const peftBytes = () =>
          page.evaluate(async () => {
            const f = await (window as unknown as { lowrankPage: PageApi }).lowrankPage
              .session()!
              .serialize('e2e');
            return { configJson: f.configJson, safetensors: Array.from(f.safetensors) };
          });
        // fromPretrained (the shipped default) → LoRA → train → saved in IndexedDB by the page
        await trainE2E(page, { steps: 2, batch: 2, block: 32 });
        expect(await page.textContent('#saved-e2e')).toBe('saved in this browser');
        const trained = await logits();
        const saved = await peftBytes();
        // a fresh base: the page reloaded, the adapter loaded back from IndexedDB
        await page.reload();
        await waitState(page, ['ready', 'error'], 120_000);
        expect(await fieldErrors(page)).toEqual([]);
        const base = await logits();
        await page.click('#load-e2e');
        expect(await page.textContent('#active-adapter')).toMatch(/^e2e \(r=8/);
        const unmerged = await logits();
        expect(unmerged, 'the saved weights are the trained ones').toEqual(trained);
        expect(maxDiff(unmerged, base), 'the adapter changes the logits').toBeGreaterThan(1e-2);
        const before = await generateFor(page, 0, 12);
        expect(await page.isDisabled('#unmerge')).toBe(true);

        await page.click('#merge');
        await waitState(page, ['merging'], 5_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await fieldErrors(page)).toEqual([]);
        expect(await page.textContent('#active-adapter')).toMatch(/^e2e \(r=8.* · merged into the base$/);
        expect(await page.textContent('#merge-status')).toMatch(/^'e2e' is merged into the base's weights/);
        // every adapted layer holds W + s·B·A and runs no LoRA path (6 blocks × 7 projections)
        const layers = await page.evaluate(() => {
          const lora = (window as unknown as { lowrankPage: PageApi }).lowrankPage.session()!.lora!;
          return [...lora.layers.values()].map((l) => [...l.merged]);
        });
        expect(layers).toEqual(Array.from({ length: 42 }, () => ['e2e']));
        for (const id of ['#merge', '#train', '#quant', '#adapter-base', '#delete-e2e'])
          expect(await page.isDisabled(id), `${id} while merged`).toBe(true);
        expect(await page.isDisabled('#download'), 'still downloadable').toBe(false);
        const merged = await logits();
        const diff = maxDiff(merged, unmerged);
        console.log(`[default model] merged vs unmerged adapter logits: max |diff| ${diff.toExponential(2)}`);
        expect(diff, 'W + s·B·A vs the LoRA path: float rounding only').toBeLessThanOrEqual(1e-4);
        const after = await generateFor(page, 0, 12);
        expect(after.adapter, 'greedy on the merged model: the same tokens').toBe(before.adapter);
        expect(after.base).toMatch(/^\(the base alone is back after unmerge/);
        expect(await peftBytes(), 'the adapter is kept as it was saved').toEqual(saved);

        await page.click('#unmerge');
        await waitState(page, ['merging'], 5_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await fieldErrors(page)).toEqual([]);
        expect(await page.textContent('#active-adapter')).toMatch(/^e2e \(r=8.*\)$/);
        expect(await page.textContent('#merge-status')).toBe('');
        expect(await logits(), 'the base rebuilt from the checkpoint, the adapter on it').toEqual(unmerged);
        await page.check('#adapter-base');
        expect(await logits(), "the base's own weights").toEqual(base);
        expect(pageErrors).toEqual([]);
        await page.context().close();
      },
      SLOW,
    );

    it('switches to the shipped char GPT-2 and back; ?model= names only shipped models', async () => {
      const page = await open('?backend=cpu');
      const load = async (name: string) => {
        await page.selectOption('#shipped-model', name);
        await page.click('#load-shipped');
        await waitState(page, ['loading'], 5_000).catch(() => undefined);
        await waitState(page, ['ready', 'error'], 60_000);
        expect(await fieldErrors(page)).toEqual([]);
      };
      await load('char');
      expect(await page.textContent('#model-info')).toMatch(
        /^char-level GPT-2 pre-trained on Tiny Shakespeare \(4 layers, width 64, [\d,]+ parameters, val loss [\d.]+\)$/,
      );
      // its 128-character context would not hold an E2E prompt and 80 characters: off for it
      expect(await page.isChecked('#no-repeat')).toBe(false);
      expect(
        await page.$$eval('input.target:checked', (els) => els.map((e) => (e as HTMLInputElement).value)),
      ).toEqual(['c_attn', 'c_proj']);
      await load('llama');
      expect(await page.textContent('#model-info')).toMatch(
        /^Llama pre-trained by lowrank .*5,770,496 parameters/,
      );
      expect(await page.isChecked('#no-repeat')).toBe(true);
      expect(pageErrors).toEqual([]);
      await page.context().close();
      const bad = await browser.newPage();
      await bad.goto(`${url}?backend=cpu&model=gpt4`);
      await waitState(bad, ['error'], 30_000);
      expect(await bad.textContent('#error')).toBe('?model=gpt4: the page ships llama and char');
      await bad.close();
    });

    it(
      'on WebGPU: the same flow at the smallest size (3 steps of 2 × 32 tokens, one reply of 6 tokens)',
      async () => {
        const page = await open('?backend=webgpu');
        expect(await page.textContent('#backend')).toMatch(/^WebGPU \(/);
        // float32 on the GPU against the CPU backend's float64 accumulation (measured below 1e-4)
        await defaultFlow(
          page,
          { steps: 3, batch: 2, block: 32 },
          { mrs: 1, maxTokens: 6, logitsTol: 1e-3, lossTol: 1e-3 },
        );
        expect(pageErrors).toEqual([]);
        await page.context().close();
      },
      SLOW,
    );
  },
);
