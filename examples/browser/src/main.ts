/**
 * The page: fine-tunes LoRA adapters on a small pre-trained GPT in the tab. `?backend=cpu` forces
 * the CPU backend (default: WebGPU through navigator.gpu when an adapter exists, else the CPU).
 */
import type { Device } from 'lowrank';
import { type ChartSeries, drawLossChart } from './chart.js';
import { type AdapterInfo, BASE, type Corpus, Session } from './session.js';

const COLORS = ['#2f6fde', '#e0671b', '#2a9d55', '#9b3fc2', '#c23f5d'];
const SAMPLE_TEXT = `Q: What does LoRA train?
A: Two small matrices, A and B, next to a frozen weight W.
Q: Why is it cheap?
A: The update B A has a low rank, so few numbers train.
Q: Can it run in a browser?
A: Yes. The same code trains on WebGPU in this tab.
`;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
};
const input = (id: string): HTMLInputElement => $<HTMLInputElement>(id);
const num = (id: string): number => {
  const v = Number(input(id).value);
  if (!Number.isFinite(v)) throw new Error(`${id}: '${input(id).value}' is not a number`);
  return v;
};

const base = new URL('./', window.location.href).href;
const params = new URLSearchParams(window.location.search);
const wanted = (params.get('backend') ?? 'auto') as Device | 'auto';
const notices: string[] = [];
let session: Session | null = null;
let e2e: Corpus | null = null;
const series: ChartSeries[] = [];

function setState(state: 'loading' | 'ready' | 'training' | 'generating' | 'error'): void {
  document.body.dataset.state = state;
  const idle = state === 'ready';
  for (const id of ['train', 'generate']) $<HTMLButtonElement>(id).disabled = !idle;
  $<HTMLButtonElement>('stop').disabled = state !== 'training';
  $<HTMLButtonElement>('download').disabled = !idle || !session || session.active === BASE;
  for (const el of document.querySelectorAll<HTMLInputElement>('#adapters input'))
    el.disabled = state !== 'ready';
}

function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  $('error').textContent = msg;
  console.error(e);
}

function describeAdapter(info: AdapterInfo | undefined): string {
  if (!info) return 'none (base model)';
  return `${info.name} (r=${info.r}, α=${info.alpha}, ${info.targets.join('+')}; ${info.source})`;
}

function renderAdapters(): void {
  const s = session!;
  const box = $('adapters');
  box.replaceChildren();
  const names = [BASE, ...s.adapters.keys()];
  for (const name of names) {
    const info = s.adapters.get(name);
    const label = document.createElement('label');
    const radio = document.createElement('input');
    radio.type = 'radio';
    radio.name = 'adapter';
    radio.value = name;
    radio.id = `adapter-${name}`;
    radio.checked = s.active === name;
    radio.addEventListener('change', () => {
      s.use(name);
      renderAdapters();
      setState('ready');
    });
    label.append(radio, ` ${name === BASE ? 'base model (no adapter)' : describeAdapter(info)}`);
    if (info) {
      const stats = document.createElement('span');
      stats.className = 'hint';
      stats.textContent = `  held-out loss ${info.evalBefore.toFixed(3)} → ${info.evalAfter.toFixed(3)} after ${info.steps} steps, ${Math.round(info.tokensPerSecond)} tokens/s`;
      label.append(stats);
    }
    box.append(label);
  }
  $('active-adapter').textContent = describeAdapter(s.adapters.get(s.active));
  $('gen-adapter-title').textContent =
    s.active === BASE ? 'with the adapter (after): none active' : `with adapter '${s.active}' (after)`;
}

function updateDataHint(): void {
  const s = session;
  if (!s) return;
  const useText = input('source-text').checked;
  if (!useText) {
    $('data-hint').textContent = e2e
      ? `E2E: ${e2e.train.length.toLocaleString('en-US')} training characters (dev split), ${e2e.heldOut.length.toLocaleString('en-US')} held out (test split).`
      : '';
    return;
  }
  const { ids, replaced } = s.encode($<HTMLTextAreaElement>('text').value);
  $('data-hint').textContent =
    `${ids.length.toLocaleString('en-US')} characters` +
    (replaced
      ? ` (${replaced} outside the model's ${s.tokenizer.vocabSize}-character vocabulary become spaces)`
      : '');
}

async function train(): Promise<void> {
  const s = session!;
  $('error').textContent = '';
  const settings = {
    name: input('name').value,
    steps: Math.round(num('steps')),
    batchSize: Math.round(num('batch')),
    blockSize: Math.min(Math.round(num('block')), s.model.config.n_positions),
    lr: num('lr'),
    r: Number($<HTMLSelectElement>('rank').value),
    targets: [...document.querySelectorAll<HTMLInputElement>('input.target:checked')].map((el) => el.value),
  };
  const corpus = input('source-text').checked
    ? s.textCorpus($<HTMLTextAreaElement>('text').value, settings.blockSize)
    : e2e!;
  setState('training');
  const color = COLORS[series.length % COLORS.length];
  const current: ChartSeries = { label: settings.name, color, points: [] };
  series.push(current);
  $('train-status').textContent =
    `measuring the held-out loss, then training '${settings.name}' on ${corpus.label}…`;
  try {
    const info = await s.train(corpus, settings, (r) => {
      current.points.push([r.step, r.loss]);
      $('readout').textContent =
        `step ${r.step}/${r.steps} · loss ${r.loss.toFixed(3)} · ${Math.round(r.tokensPerSecond).toLocaleString('en-US')} tokens/s`;
      drawLossChart($<HTMLCanvasElement>('chart'), series);
    });
    $('train-status').textContent =
      `'${info.name}' trained ${info.steps} steps on ${info.source}: held-out loss ${info.evalBefore.toFixed(3)} → ${info.evalAfter.toFixed(3)}.`;
    // suggest a fresh name for the next adapter
    let i = 2;
    while (s.adapters.has(`adapter${i}`)) i++;
    input('name').value = input('source-text').checked ? `text${i}` : `adapter${i}`;
  } catch (e) {
    series.pop();
    drawLossChart($<HTMLCanvasElement>('chart'), series);
    $('train-status').textContent = '';
    showError(e);
  }
  renderAdapters();
  setState('ready');
}

async function generate(): Promise<void> {
  const s = session!;
  $('error').textContent = '';
  setState('generating');
  try {
    const prompt = input('prompt').value;
    const maxNewTokens = Math.round(num('max-tokens'));
    $('gen-base').textContent = '…';
    $('gen-adapter').textContent = s.active === BASE ? '(train or choose an adapter)' : '…';
    const show = (r: { text: string; eos: boolean }): string =>
      `${prompt}${r.text}${r.eos ? ' ⏎ (end of text)' : ''}`;
    $('gen-base').textContent = show(await s.generate(prompt, { maxNewTokens, base: true }));
    if (s.active !== BASE) $('gen-adapter').textContent = show(await s.generate(prompt, { maxNewTokens }));
  } catch (e) {
    showError(e);
  }
  setState('ready');
}

async function download(): Promise<void> {
  const s = session!;
  const { configJson, safetensors } = await s.serialize(s.active);
  const files: [string, BlobPart, string][] = [
    ['adapter_config.json', configJson, 'application/json'],
    ['adapter_model.safetensors', safetensors as Uint8Array<ArrayBuffer>, 'application/octet-stream'],
  ];
  for (const [name, data, type] of files) {
    const url = URL.createObjectURL(new Blob([data], { type }));
    const a = Object.assign(document.createElement('a'), { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    // browsers may drop a second download started in the same task
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** What the browser test uses (and what a curious visitor can call from the console). */
export interface PageApi {
  session: () => Session | null;
  notices: string[];
  logits: (text: string) => Promise<number[]>;
  adapters: () => AdapterInfo[];
}

async function start(): Promise<void> {
  $<HTMLTextAreaElement>('text').value = SAMPLE_TEXT.repeat(8);
  drawLossChart($<HTMLCanvasElement>('chart'), series);
  const api: PageApi = {
    session: () => session,
    notices,
    logits: (text) => session!.logits(text),
    adapters: () => [...(session?.adapters.values() ?? [])],
  };
  (window as unknown as { lowrankPage: PageApi }).lowrankPage = api;
  try {
    session = await Session.open({ backend: wanted, base, onNotice: (m) => notices.push(m) });
    const s = session;
    const fallback =
      s.device === 'cpu' && wanted !== 'cpu'
        ? ` — fallback: ${notices.map((n) => n.replace(/^lowrank: /, '')).join('; ')}`
        : '';
    const software = /swiftshader|llvmpipe|lavapipe/i.test(s.backend)
      ? ' — a software adapter: the GPU is emulated on the CPU, so expect it to be slow'
      : '';
    $('backend').textContent = `${s.backend}${fallback}${software}`;
    const c = s.model.config;
    $('model-info').textContent =
      `char-level GPT-2 pre-trained on Tiny Shakespeare (${c.n_layer} layers, width ${c.n_embd}, ` +
      `${s.parameters.toLocaleString('en-US')} parameters, val loss ${s.pretrain.valLoss.toFixed(2)})`;
    e2e = await s.e2eCorpus(base);
    renderAdapters();
    updateDataHint();
    setState('ready');
  } catch (e) {
    showError(e);
    setState('error');
    return;
  }
  $('train').addEventListener('click', () => void train());
  $('stop').addEventListener('click', () => session?.stop());
  $('generate').addEventListener('click', () => void generate());
  $('download').addEventListener('click', () => void download().catch(showError));
  for (const id of ['source-e2e', 'source-text']) input(id).addEventListener('change', updateDataHint);
  $('text').addEventListener('input', () => {
    input('source-text').checked = true;
    updateDataHint();
  });
  window.addEventListener('resize', () => drawLossChart($<HTMLCanvasElement>('chart'), series));
}

void start();
