/**
 * The page: fine-tunes LoRA adapters on a small pre-trained language model in the tab (the shipped
 * 5.8M Llama; `?model=char` starts with the older character-level GPT-2). `?backend=cpu` forces
 * the CPU backend (default: WebGPU through navigator.gpu when an adapter exists, else the CPU).
 */
import { CharTokenizer, type Device, e2ePrompt, GPT2LMHeadModel, type LoadDType, memory } from 'lowrank';
import { type ChartSeries, drawLossChart } from './chart.js';
import {
  describeFootprint,
  type FieldError,
  formatBytes,
  formatDuration,
  quantLabel,
  type RawNumber,
  readQuant,
  type TrainSettings,
  validateGenerate,
  validateTrain,
} from './form.js';
import {
  type DirectoryLike,
  directorySource,
  folderSource,
  hubSource,
  isShippedModel,
  type ModelSource,
  SHIPPED_MODELS,
  type ShippedModel,
  shippedSource,
} from './model-source.js';
import { type AdapterInfo, BASE, type E2ECorpus, Session } from './session.js';
import { AdapterStore, type SavedAdapter } from './store.js';

const COLORS = ['#2f6fde', '#e0671b', '#2a9d55', '#9b3fc2', '#c23f5d'];
const SAMPLE_TEXT = `Q: What does LoRA train?
A: Two small matrices, A and B, next to a frozen weight W.
Q: Why is it cheap?
A: The update B A has a low rank, so few numbers train.
Q: Can it run in a browser?
A: Yes. The same code trains on WebGPU in this tab.
`;
/** Controls of each form, by id; each has a `<id>-error` element next to it. */
const TRAIN_FIELDS = ['name', 'rank', 'steps', 'batch', 'block', 'lr', 'targets', 'text'];
const GENERATE_FIELDS = ['prompt', 'max-tokens', 'temperature', 'top-k', 'top-p', 'seed'];

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
};
const input = (id: string): HTMLInputElement => $<HTMLInputElement>(id);
const raw = (id: string): RawNumber => ({ value: input(id).value, badInput: input(id).validity.badInput });
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

const base = new URL('./', window.location.href).href;
const params = new URLSearchParams(window.location.search);
const wanted = (params.get('backend') ?? 'auto') as Device | 'auto';
/** `?hub=<address>`: a Hub mirror (or a test's server) instead of https://huggingface.co. */
const hubEndpoint = params.get('hub') ?? undefined;
/** `?model=char`: start with the character-level GPT-2 instead of the Llama. */
const firstModel: ShippedModel | Error = ((name) =>
  isShippedModel(name)
    ? name
    : new Error(`?model=${name}: the page ships ${Object.keys(SHIPPED_MODELS).join(' and ')}`))(
  params.get('model') ?? 'llama',
);
const notices: string[] = [];
let session: Session | null = null;
let e2e: E2ECorpus | null = null;
let store: AdapterStore | null = null;
/** Adapters saved in this browser, by name (a copy of the store's records). */
const saved = new Map<string, SavedAdapter>();
const series: ChartSeries[] = [];
/** The text file whose contents are in the text box (null once the box is edited by hand). */
let textFile: string | null = null;
const stateLog: string[] = [];
const readouts: string[] = [];

function setState(
  state: 'loading' | 'ready' | 'quantizing' | 'training' | 'generating' | 'merging' | 'error',
): void {
  document.body.dataset.state = state;
  stateLog.push(state);
  const idle = state === 'ready';
  // a merged adapter has no base left to train on, switch from or quantize (Session.merged)
  const merged = session?.merged ?? null;
  for (const id of ['generate', 'load-hub', 'pick-folder', 'load-shipped'])
    $<HTMLButtonElement>(id).disabled = !idle;
  $<HTMLButtonElement>('train').disabled = !idle || merged !== null;
  input('model-folder').disabled = !idle;
  $<HTMLSelectElement>('quant').disabled = !idle || merged !== null;
  $<HTMLButtonElement>('stop').disabled = state !== 'training';
  $<HTMLButtonElement>('download').disabled = !idle || !session || session.active === BASE;
  $<HTMLButtonElement>('merge').disabled = !idle || !session || session.active === BASE || merged !== null;
  $<HTMLButtonElement>('unmerge').disabled = !idle || merged === null;
  for (const el of document.querySelectorAll<HTMLInputElement | HTMLButtonElement>(
    '#adapters input, #adapters button',
  ))
    el.disabled = !idle || el.dataset.blocked !== undefined || merged !== null;
}

/** Writes each field's message next to it (and clears the others of the group); marks the controls invalid. */
function showFieldErrors(fields: readonly string[], errors: readonly FieldError[]): void {
  for (const field of fields) {
    const msgs = errors.filter((e) => e.field === field).map((e) => e.message);
    $(`${field}-error`).textContent = msgs.join(' · ');
    const control = $(field);
    if (msgs.length > 0) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  }
}

/** Moves to the first invalid control and brings its message into view. */
function focusFirst(errors: readonly FieldError[]): void {
  const first = errors[0];
  if (!first) return;
  const control = $(first.field);
  const focusable = control.matches('input, select, textarea')
    ? control
    : control.querySelector<HTMLElement>('input');
  focusable?.focus();
  $(`${first.field}-error`).scrollIntoView({ block: 'nearest' });
}

function describeAdapter(info: AdapterInfo | undefined): string {
  if (!info) return 'none (base model)';
  const base = info.base && info.base !== 'none' ? `; trained on an ${quantLabel(info.base)} base` : '';
  return `${info.name} (r=${info.r}, α=${info.alpha}, ${info.targets.join('+')}; ${info.source}${base})`;
}

/** The base's bytes by storage type next to the 'quantize base' control. */
function showBaseMemory(): void {
  $('base-memory').textContent = describeFootprint(session!.baseFootprint);
}

/**
 * Applies the 'quantize base' choice: the base is rebuilt from the checkpoint's float32 weights
 * and quantized (or left in float32); a refusal or a failure is shown next to the control, which
 * then shows the storage the base really has.
 */
async function changeQuantization(): Promise<void> {
  const s = session!;
  const select = $<HTMLSelectElement>('quant');
  const got = readQuant(select.value, { busy: s.busy });
  const fail = (text: string): void => {
    showFieldErrors(['quant'], [{ field: 'quant', message: text }]);
    select.value = s.quantization;
  };
  if ('error' in got) {
    fail(got.error);
    return;
  }
  showFieldErrors(['quant'], []);
  if (got.value === s.quantization) return;
  setState('quantizing');
  $('base-memory').textContent =
    got.value === 'none' ? 'reloading the float32 base…' : `quantizing the base to ${quantLabel(got.value)}…`;
  try {
    await s.setQuantization(got.value);
  } catch (e) {
    console.error(e);
    fail(`the base stays ${quantLabel(s.quantization)}: ${message(e)}`);
  }
  showBaseMemory();
  renderAdapters();
  setState('ready');
}

function takenBy(name: string): string | null {
  if (session?.adapters.has(name)) return 'is in this session';
  if (saved.has(name)) return 'is saved in this browser';
  return null;
}

function readTrainForm(): { settings?: TrainSettings; errors: FieldError[] } {
  const s = session!;
  const useText = input('source-text').checked;
  return validateTrain(
    {
      name: input('name').value,
      rank: $<HTMLSelectElement>('rank').value,
      steps: raw('steps'),
      batch: raw('batch'),
      block: raw('block'),
      lr: raw('lr'),
      targets: [...document.querySelectorAll<HTMLInputElement>('input.target:checked')].map((el) => el.value),
      textLength: useText ? s.encode($<HTMLTextAreaElement>('text').value).ids.length : undefined,
    },
    { nPositions: s.model.contextLength, taken: takenBy, reserved: BASE },
  );
}

function checkTrainForm(): { settings?: TrainSettings; errors: FieldError[] } {
  const result = readTrainForm();
  if (result.settings) result.settings.compile = input('compiled').checked;
  showFieldErrors(TRAIN_FIELDS, result.errors);
  return result;
}

function checkGenerateForm(): ReturnType<typeof validateGenerate> {
  const result = validateGenerate(
    {
      prompt: $<HTMLTextAreaElement>('prompt').value,
      maxTokens: raw('max-tokens'),
      temperature: raw('temperature'),
      topK: raw('top-k'),
      topP: raw('top-p'),
      seed: raw('seed'),
      noRepeat: input('no-repeat').checked
        ? {
            promptTokens: session!.encode($<HTMLTextAreaElement>('prompt').value).ids.length,
            contextLength: session!.model.contextLength,
          }
        : undefined,
    },
    session!.tokenizer.vocabSize,
  );
  showFieldErrors(GENERATE_FIELDS, result.errors);
  const g = result.settings;
  $('sampling-hint').textContent = !g
    ? ''
    : g.temperature === 0
      ? `temperature 0: greedy, the most likely token each step${g.noRepeatNgram ? ` that completes no ${g.noRepeatNgram}-gram the reply already holds` : ''} (top-k, top-p and seed are unused)`
      : `sampling at temperature ${g.temperature}, ${g.topK ? `top-k ${g.topK}` : 'every token'}, top-p ${g.topP}, seed ${g.seed} (the base model and the adapter draw the same numbers)`;
  return result;
}

/** The next free name: `<prefix><i>`. */
function suggestName(prefix: string): string {
  let i = 2;
  while (takenBy(`${prefix}${i}`)) i++;
  return `${prefix}${i}`;
}

function renderAdapters(): void {
  const s = session!;
  const box = $('adapters');
  box.replaceChildren();
  const names = [BASE, ...s.adapters.keys(), ...[...saved.keys()].filter((n) => !s.adapters.has(n))];
  for (const name of names) {
    const record = saved.get(name);
    const info = s.adapters.get(name) ?? record?.info;
    const loaded = name === BASE || s.adapters.has(name);
    const row = document.createElement('div');
    row.className = 'adapter-row';
    row.id = `row-${name}`;
    const label = document.createElement('label');
    const radio = document.createElement('input');
    radio.type = 'radio';
    radio.name = 'adapter';
    radio.value = name;
    radio.id = `adapter-${name}`;
    radio.checked = s.active === name;
    if (!loaded) radio.dataset.blocked = 'not loaded';
    radio.addEventListener('change', () => {
      s.use(name);
      renderAdapters();
      setState('ready');
    });
    label.append(radio, ` ${name === BASE ? 'base model (no adapter)' : describeAdapter(info)}`);
    row.append(label);
    if (info) {
      const stats = document.createElement('span');
      stats.className = 'hint';
      stats.textContent = `held-out loss ${info.evalBefore.toFixed(3)} → ${info.evalAfter.toFixed(3)} after ${info.steps} steps, ${Math.round(info.tokensPerSecond)} tokens/s`;
      row.append(stats);
    }
    if (name !== BASE) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.id = `saved-${name}`;
      const otherModel = record && session && record.modelKey !== session.modelKey;
      badge.textContent = !record
        ? 'not saved'
        : otherModel
          ? 'saved, for another model'
          : loaded
            ? 'saved in this browser'
            : 'saved in this browser, not loaded';
      row.append(badge);
      if (record && !loaded) {
        const load = button(`load-${name}`, 'Load', () => loadSaved(name));
        if (otherModel) load.dataset.blocked = 'another model';
        row.append(load);
      }
      row.append(button(`delete-${name}`, 'Delete', () => deleteAdapter(name)));
      const err = document.createElement('span');
      err.className = 'field-error';
      err.id = `adapter-error-${name}`;
      err.setAttribute('role', 'alert');
      row.append(err);
    }
    box.append(row);
  }
  $('active-adapter').textContent =
    describeAdapter(s.adapters.get(s.active)) + (s.merged ? ' · merged into the base' : '');
  $('gen-adapter-title').textContent =
    s.active === BASE
      ? 'with the adapter (after): none active'
      : s.merged
        ? `adapter '${s.merged}' merged into the base (after)`
        : `with adapter '${s.active}' (after)`;
  $('merge-status').textContent = s.merged
    ? `'${s.merged}' is merged into the base's weights (W + s·B·A, no LoRA path): generation runs on the merged model. The adapter stays loaded, saved and downloadable; unmerge reloads the base from the checkpoint.`
    : '';
}

function button(id: string, text: string, onClick: () => Promise<void> | void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.id = id;
  b.textContent = text;
  b.addEventListener('click', () => void onClick());
  return b;
}

/**
 * Runs an action of one adapter's row (load, delete), then re-renders the list; a failure is shown
 * next to that row (the re-render clears the old messages first).
 */
async function adapterAction(name: string, action: () => Promise<void> | void): Promise<void> {
  let failure: unknown = null;
  try {
    await action();
  } catch (e) {
    console.error(e);
    failure = e;
  }
  renderAdapters();
  setState('ready');
  checkTrainForm();
  if (failure === null) return;
  const el = document.getElementById(`adapter-error-${name}`) ?? $('adapters-error');
  el.textContent = message(failure);
}

function loadSaved(name: string): Promise<void> {
  return adapterAction(name, () => {
    const record = saved.get(name);
    if (!record) throw new Error(`no saved adapter '${name}'`);
    session!.load(record.info, record.configJson, record.safetensors);
    addSeries(name, [...record.info.losses]);
  });
}

/** Deletes an adapter from the session (when loaded) and from the browser (when saved). */
function deleteAdapter(name: string): Promise<void> {
  return adapterAction(name, async () => {
    const s = session!;
    if (s.adapters.has(name)) s.delete(name);
    const i = series.findIndex((c) => c.label === name);
    if (i >= 0) series.splice(i, 1);
    drawLossChart($<HTMLCanvasElement>('chart'), series);
    if (saved.has(name)) {
      await store?.delete(name);
      saved.delete(name);
    }
  });
}

function addSeries(label: string, points: [number, number][]): ChartSeries {
  const current: ChartSeries = { label, color: COLORS[series.length % COLORS.length], points };
  series.push(current);
  drawLossChart($<HTMLCanvasElement>('chart'), series);
  return current;
}

/** Keeps a trained adapter in IndexedDB (PEFT's two files and what the page shows about it). */
async function save(info: AdapterInfo): Promise<void> {
  const s = session!;
  if (!store) return;
  const { configJson, safetensors } = await s.serialize(info.name);
  const record: SavedAdapter = {
    name: info.name,
    info,
    configJson,
    safetensors: safetensors.slice(),
    modelKey: s.modelKey,
    savedAt: Date.now(),
  };
  await store.put(record);
  saved.set(info.name, record);
}

function updateDataHint(): void {
  const s = session;
  if (!s) return;
  const useText = input('source-text').checked;
  if (!useText) {
    $('data-hint').textContent = e2e
      ? `E2E: ${e2e.train.length.toLocaleString('en-US')} training ${s.tokenizer instanceof CharTokenizer ? 'characters' : 'tokens'} (dev split), ${e2e.heldOut.length.toLocaleString('en-US')} held out (test split).`
      : '';
    return;
  }
  const { ids, replaced } = s.encode($<HTMLTextAreaElement>('text').value);
  const unit = s.tokenizer instanceof CharTokenizer ? 'characters' : 'tokens';
  $('data-hint').textContent =
    `${textFile ? `${textFile}: ` : ''}${ids.length.toLocaleString('en-US')} ${unit}` +
    (replaced
      ? ` (${replaced} outside the model's ${s.tokenizer.vocabSize}-character vocabulary become spaces)`
      : '');
}

async function train(): Promise<void> {
  const s = session!;
  $('train-error').textContent = '';
  // nothing starts until every field is valid
  const { settings, errors } = checkTrainForm();
  if (!settings) {
    focusFirst(errors);
    return;
  }
  const useText = input('source-text').checked;
  const corpus = useText ? s.textCorpus($<HTMLTextAreaElement>('text').value, settings.blockSize) : e2e!;
  setState('training');
  const current = addSeries(settings.name, []);
  $('train-status').textContent =
    `measuring the held-out loss, then training '${settings.name}' on ${corpus.label}…`;
  $('progress').textContent = `step 0/${settings.steps} · loss – · – tokens/s`;
  $('eta').textContent = 'ETA –';
  $('memory').textContent = 'memory –';
  try {
    const info = await s.train(corpus, settings, (r) => {
      current.points.push([r.step, r.loss]);
      $('progress').textContent =
        `step ${r.step}/${r.steps} · loss ${r.loss.toFixed(3)} · ${Math.round(r.tokensPerSecond).toLocaleString('en-US')} tokens/s`;
      $('eta').textContent =
        r.step < r.steps
          ? `ETA ${formatDuration(r.etaSeconds)}`
          : `done in ${formatDuration(r.elapsedSeconds)}`;
      const quantized = Object.entries(r.quantized)
        .map(([f, q]) => ` · ${f} weights ${formatBytes(q.bytes)} (float32 ${formatBytes(q.f32Bytes)})`)
        .join('');
      $('memory').textContent =
        `memory ${formatBytes(r.memoryBytes)} (peak ${formatBytes(r.peakBytes)})${quantized}`;
      readouts.push($('readout').textContent ?? '');
      drawLossChart($<HTMLCanvasElement>('chart'), series);
    });
    $('train-status').textContent =
      `'${info.name}' trained ${info.steps} steps on ${info.source}: held-out loss ${info.evalBefore.toFixed(3)} → ${info.evalAfter.toFixed(3)}.`;
    try {
      await save(info);
    } catch (e) {
      $('adapters-error').textContent = `'${info.name}' was not saved in this browser: ${message(e)}`;
    }
    input('name').value = suggestName(useText ? 'text' : 'adapter');
  } catch (e) {
    series.pop();
    drawLossChart($<HTMLCanvasElement>('chart'), series);
    $('train-status').textContent = '';
    console.error(e);
    $('train-error').textContent = message(e);
  }
  renderAdapters();
  setState('ready');
  checkTrainForm();
}

async function generate(): Promise<void> {
  const s = session!;
  $('generate-error').textContent = '';
  const { settings, errors } = checkGenerateForm();
  if (!settings) {
    focusFirst(errors);
    return;
  }
  setState('generating');
  try {
    const { prompt } = settings;
    $('gen-base').textContent = '…';
    $('gen-adapter').textContent = s.active === BASE ? '(train or choose an adapter)' : '…';
    const stopAtNewline = input('stop-line').checked;
    const show = (r: { text: string; eos: boolean }): string =>
      `${prompt}${r.text}${r.eos ? ' ⏎ (end of text)' : ''}`;
    // merged: the base alone is not in memory (its weights hold ΔW) until unmerge reloads it
    $('gen-base').textContent = s.merged
      ? `(the base alone is back after unmerge: '${s.merged}' is merged into its weights)`
      : show(await s.generate({ ...settings, stopAtNewline, base: true }));
    if (s.active !== BASE)
      $('gen-adapter').textContent = show(await s.generate({ ...settings, stopAtNewline }));
  } catch (e) {
    console.error(e);
    $('generate-error').textContent = message(e);
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

/**
 * Merges the active adapter into the base, or gives the base its own weights back (`Session.merge`
 * / `unmerge`); a failure is shown under the buttons and leaves the model as it was.
 */
async function mergeAction(action: 'merge' | 'unmerge'): Promise<void> {
  const s = session!;
  $('merge-error').textContent = '';
  setState('merging');
  $('merge-status').textContent =
    action === 'merge' ? `merging '${s.active}' into the base…` : 'reloading the base from the checkpoint…';
  try {
    await (action === 'merge' ? s.merge() : s.unmerge());
  } catch (e) {
    console.error(e);
    $('merge-error').textContent = message(e);
  }
  for (const id of ['gen-base', 'gen-adapter']) $(id).textContent = '';
  showBaseMemory();
  renderAdapters();
  setState('ready');
}

/** What the browser test uses (and what a curious visitor can call from the console). */
export interface PageApi {
  session: () => Session | null;
  notices: string[];
  logits: (text: string) => Promise<number[]>;
  adapters: () => AdapterInfo[];
  /** Names of the adapters saved in this browser. */
  saved: () => string[];
  /** Every state the page entered, in order (`data-state` on the body). */
  stateLog: string[];
  /** The training readout's text after each step. */
  readouts: string[];
  /** `modelFootprint` of the base as it is now (what the text next to 'quantize base' shows). */
  baseFootprint: () => { bytes: number; f32Bytes: number; quantized: { bytes: number; f32Bytes: number } };
  /** `lr.memory().quantized`: the live quantized weights by format (a replaced base's are freed). */
  quantizedMemory: () => Record<string, { count: number; bytes: number; f32Bytes: number }>;
}

/**
 * The modules LoRA can adapt in this model, and which are ticked at first: q and v, as the LoRA
 * paper; every projection for the shipped Llama, as the demo trains it.
 */
function targetChoices(s: Session): { value: string; label: string; checked: boolean }[] {
  const all = s.source.id === 'shipped-llama';
  if (s.model instanceof GPT2LMHeadModel)
    return [
      { value: 'c_attn', label: 'c_attn (q|k|v)', checked: true },
      { value: 'c_proj', label: 'c_proj', checked: true },
      { value: 'c_fc', label: 'c_fc (MLP)', checked: false },
    ];
  const attention = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((value) => ({
    value,
    label: value,
    checked: all || value === 'q_proj' || value === 'v_proj',
  }));
  const mlp = ['gate_proj', 'up_proj', 'down_proj'].map((value) => ({
    value,
    label: `${value} (MLP)`,
    checked: all,
  }));
  return [...attention, ...mlp];
}

/** The 'adapt:' checkboxes for the session's model. */
function renderTargets(s: Session): void {
  const box = $('targets');
  for (const label of [...box.querySelectorAll('label')]) label.remove();
  for (const t of targetChoices(s)) {
    const label = document.createElement('label');
    const box1 = Object.assign(document.createElement('input'), {
      type: 'checkbox',
      value: t.value,
      checked: t.checked,
    });
    box1.className = 'target';
    label.append(box1, ` ${t.label}`);
    box.append(label);
  }
}

/** The 'model:' pill: what the base is, its size and where it came from. */
function describeModel(s: Session): string {
  const m = s.model;
  const params = `${s.parameters.toLocaleString('en-US')} parameters`;
  const weights = s.dtype === 'f32' ? '' : `, ${s.dtype} base`;
  if (m instanceof GPT2LMHeadModel) {
    const c = m.config;
    if (s.pretrain && typeof s.pretrain.valLoss === 'number' && s.source.id === 'shipped')
      return (
        `char-level GPT-2 pre-trained on Tiny Shakespeare (${c.n_layer} layers, width ${c.n_embd}, ` +
        `${params}${weights}, val loss ${s.pretrain.valLoss.toFixed(2)})`
      );
    return `GPT-2 from ${s.source.label} (${c.n_layer} layers, width ${c.n_embd}, ${params}${weights})`;
  }
  const c = m.config;
  const v = s.pretrain?.valLoss;
  if (s.source.id === 'shipped-llama' && v && typeof v === 'object')
    return (
      `Llama pre-trained by lowrank on Tiny Shakespeare + the Brown Corpus (${c.num_hidden_layers} layers, ` +
      `width ${c.hidden_size}, byte-level BPE of ${c.vocab_size} tokens, ${params}${weights}, val loss ` +
      `${Object.values(v)
        .map((x) => x.toFixed(2))
        .join(' / ')} nats/token)`
    );
  return `${c.model_type} from ${s.source.label} (${c.num_hidden_layers} layers, width ${c.hidden_size}, ${params}${weights})`;
}

/** The 'test MR' choices: the E2E test split's first meaning representations, as prompts. */
function renderExampleMrs(): void {
  const select = $<HTMLSelectElement>('example-mr');
  const first = Object.assign(document.createElement('option'), {
    value: '',
    textContent: 'a test MR as the prompt…',
  });
  select.replaceChildren(
    first,
    ...(e2e?.testMrs ?? []).map((mr, i) =>
      Object.assign(document.createElement('option'), { value: String(i), textContent: mr }),
    ),
  );
}

/** Everything on the page that depends on the model: shown again after a model is loaded. */
async function showModel(s: Session): Promise<void> {
  $('model-info').textContent = describeModel(s);
  renderTargets(s);
  const block = input('block');
  block.max = String(Math.min(1024, s.model.contextLength));
  if (Number(block.value) > s.model.contextLength) block.value = block.max;
  e2e = await s.e2eCorpus(base);
  renderExampleMrs();
  input('no-repeat').checked = s.source.id === 'shipped-llama';
  if (takenBy(input('name').value)) input('name').value = suggestName('adapter');
  renderAdapters();
  updateDataHint();
  $<HTMLSelectElement>('quant').value = s.quantization;
  showBaseMemory();
  checkTrainForm();
  checkGenerateForm();
}

/**
 * Replaces the session's model by the one `open` gives (a Hub repository, a picked folder):
 * read and built before the old one goes, so a failure (shown under the model controls) leaves
 * the page as it was. The old model's adapters go with it; adapters saved in this browser stay
 * listed (loadable again once their model is back).
 */
async function switchModel(open: (progress: (text: string) => void) => Promise<ModelSource>): Promise<void> {
  const old = session!;
  if (old.busy) return;
  $('model-error').textContent = '';
  const progress = (text: string): void => {
    $('model-progress').textContent = text;
  };
  setState('loading');
  const t0 = performance.now();
  try {
    const source = await open(progress);
    progress(`building the model from ${source.label}…`);
    const dtype = $<HTMLSelectElement>('model-dtype').value as LoadDType;
    const next = await Session.openModel({ device: old.device, backend: old.backend }, source, dtype);
    session = next;
    old.model.dispose();
    series.length = 0;
    drawLossChart($<HTMLCanvasElement>('chart'), series);
    for (const id of ['gen-base', 'gen-adapter']) $(id).textContent = '';
    await showModel(next);
    const mem = memory();
    progress(
      `loaded ${source.label} in ${((performance.now() - t0) / 1000).toFixed(1)} s · ${describeFootprint(next.baseFootprint)} · memory in use ${formatBytes(mem.numBytes)}`,
    );
  } catch (e) {
    console.error(e);
    progress('');
    $('model-error').textContent = `the model stays ${old.source.label}: ${message(e)}`;
  }
  setState('ready');
}

function hubProgress(progress: (text: string) => void) {
  return (p: { file: string; loaded: number; total: number; cached: boolean }): void =>
    progress(
      p.cached
        ? `${p.file}: in the cache`
        : `downloading ${p.file}: ${formatBytes(p.loaded)} of ${formatBytes(p.total)}`,
    );
}

async function start(): Promise<void> {
  $<HTMLTextAreaElement>('text').value = SAMPLE_TEXT.repeat(8);
  drawLossChart($<HTMLCanvasElement>('chart'), series);
  const api: PageApi = {
    session: () => session,
    notices,
    logits: (text) => session!.logits(text),
    adapters: () => [...(session?.adapters.values() ?? [])],
    saved: () => [...saved.keys()],
    stateLog,
    readouts,
    baseFootprint: () => session!.baseFootprint,
    quantizedMemory: () => memory().quantized,
  };
  (window as unknown as { lowrankPage: PageApi }).lowrankPage = api;
  setState('loading');
  try {
    if (firstModel instanceof Error) throw firstModel;
    session = await Session.open({
      backend: wanted,
      base,
      model: firstModel,
      onNotice: (m) => notices.push(m),
    });
    const s = session;
    const fallback =
      s.device === 'cpu' && wanted !== 'cpu' && notices.length > 0
        ? ` — fallback: ${notices.map((n) => n.replace(/^lowrank: /, '')).join('; ')}`
        : '';
    const software = /swiftshader|llvmpipe|lavapipe/i.test(s.backend)
      ? ' — a software adapter: the GPU is emulated on the CPU, so expect it to be slow'
      : '';
    // vite.config.ts (ISOLATION_HEADERS) says why the CPU backend wants an isolated page
    const isolation =
      s.device === 'cpu' && !window.crossOriginIsolated
        ? ' — the page is not cross-origin isolated (COOP/COEP headers): the Wasm memory is not shared, and reading weights can fail once it grows'
        : '';
    $('backend').textContent = `${s.backend}${fallback}${software}${isolation}`;
    $('model-info').textContent = describeModel(s);
    renderTargets(s);
    e2e = await s.e2eCorpus(base);
    renderExampleMrs();
    // the demo's decoding for its model; another model's context may not hold prompt and reply
    input('no-repeat').checked = s.source.id === 'shipped-llama';
    $<HTMLSelectElement>('shipped-model').value = firstModel;
  } catch (e) {
    console.error(e);
    $('error').textContent = message(e);
    setState('error');
    return;
  }
  try {
    store = await AdapterStore.open();
    for (const r of await store.list()) saved.set(r.name, r);
  } catch (e) {
    store = null;
    $('store-status').textContent = `Adapters are not kept across reloads here: ${message(e)}`;
  }
  if (takenBy(input('name').value)) input('name').value = suggestName('adapter');
  renderAdapters();
  updateDataHint();
  $<HTMLSelectElement>('quant').value = session.quantization; // a reload may restore the old choice
  showBaseMemory();
  checkTrainForm();
  checkGenerateForm();
  setState('ready');
  $('quant').addEventListener('change', () => void changeQuantization());
  $('hub-store').textContent =
    typeof navigator.storage?.getDirectory === 'function'
      ? 'the Origin Private File System'
      : 'the Cache API';
  $('load-shipped').addEventListener('click', () => {
    const name = $<HTMLSelectElement>('shipped-model').value;
    if (!isShippedModel(name)) return;
    void switchModel(async () => shippedSource(base, name));
  });
  $('example-mr').addEventListener('change', () => {
    const mr = e2e?.testMrs[Number($<HTMLSelectElement>('example-mr').value)];
    if (mr === undefined) return;
    $<HTMLTextAreaElement>('prompt').value = e2ePrompt(mr);
    input('stop-line').checked = true;
    void checkGenerateForm();
  });
  $('load-hub').addEventListener('click', () => {
    const id = input('hub-id').value;
    void switchModel(async (progress) => {
      progress(`asking the Hub for ${id.trim()}…`);
      return hubSource(id, { endpoint: hubEndpoint, onProgress: hubProgress(progress) });
    });
  });
  input('model-folder').addEventListener('change', () => {
    const files = [...(input('model-folder').files ?? [])];
    input('model-folder').value = ''; // the same folder can be picked again
    if (files.length > 0) void switchModel(async () => folderSource(files));
  });
  const picker = (window as unknown as { showDirectoryPicker?: () => Promise<DirectoryLike> })
    .showDirectoryPicker;
  if (picker) {
    $('pick-folder').hidden = false;
    $('pick-folder').addEventListener('click', () => {
      void switchModel(async () => directorySource(await picker.call(window)));
    });
  }
  input('text-file').addEventListener('change', () => {
    const file = input('text-file').files?.[0];
    if (!file) return;
    void file.text().then(
      (text) => {
        $<HTMLTextAreaElement>('text').value = text.replace(/\r/g, '');
        input('source-text').checked = true;
        textFile = file.name;
        updateDataHint();
        checkTrainForm();
      },
      (e: unknown) => {
        $('text-error').textContent = `${file.name} could not be read: ${message(e)}`;
      },
    );
  });
  $('train').addEventListener('click', () => void train());
  $('stop').addEventListener('click', () => session?.stop());
  $('generate').addEventListener('click', () => void generate());
  $('merge').addEventListener('click', () => void mergeAction('merge'));
  $('unmerge').addEventListener('click', () => void mergeAction('unmerge'));
  $('download').addEventListener('click', () => {
    $('download-error').textContent = '';
    void download().catch((e: unknown) => {
      console.error(e);
      $('download-error').textContent = message(e);
    });
  });
  const onTrainInput = (): void => {
    updateDataHint();
    checkTrainForm();
  };
  for (const id of ['source-e2e', 'source-text']) input(id).addEventListener('change', onTrainInput);
  $('text').addEventListener('input', () => {
    textFile = null;
    input('source-text').checked = true;
    onTrainInput();
  });
  for (const id of ['name', 'rank', 'steps', 'batch', 'block', 'lr'])
    $(id).addEventListener('input', onTrainInput);
  $('targets').addEventListener('change', onTrainInput);
  for (const id of GENERATE_FIELDS) $(id).addEventListener('input', () => void checkGenerateForm());
  input('no-repeat').addEventListener('change', () => void checkGenerateForm());
  window.addEventListener('resize', () => drawLossChart($<HTMLCanvasElement>('chart'), series));
}

void start();
