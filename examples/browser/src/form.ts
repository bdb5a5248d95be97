/**
 * The page's form rules, without the DOM: every number is checked against a range before any
 * work starts, and each problem names the field it belongs to so the page can show it next to
 * that control. main.ts reads the raw field values and calls these; session.ts calls
 * `checkTrainSettings` again before training (the same rules, for callers other than the page).
 */

/** A problem with one field: the id of the control it belongs to and what to do about it. */
export interface FieldError {
  field: string;
  message: string;
}

/** What a number field accepts. */
export interface NumberSpec {
  /** Shown in messages ("steps", "learning rate"). */
  label: string;
  min: number;
  max: number;
  /** Whole numbers only. */
  integer?: boolean;
  /** `min` itself is refused (a learning rate of 0, a top-p of 0). */
  minExclusive?: boolean;
  /** Appended to the range message: what the value means or what is usual. */
  note?: string;
}

/** The raw state of a number input: its text and whether the browser could not parse what was typed. */
export interface RawNumber {
  value: string;
  /** `input.validity.badInput`: the box holds text that is no number (the value reads as ''). */
  badInput?: boolean;
}

function rangeText(spec: NumberSpec): string {
  const kind = spec.integer ? 'a whole number' : 'a number';
  const lo = spec.minExclusive ? `greater than ${spec.min}` : `from ${spec.min}`;
  const hi = spec.minExclusive ? `and at most ${spec.max}` : `to ${spec.max}`;
  return `${kind} ${lo} ${hi}${spec.note ? ` (${spec.note})` : ''}`;
}

/**
 * Reads one number field: the value, or the message to show next to the field.
 *
 * @example
 * readNumber({ value: '' }, { label: 'steps', min: 1, max: 5000, integer: true });
 * // { error: 'steps is empty: enter a whole number from 1 to 5000' }
 */
export function readNumber(raw: RawNumber, spec: NumberSpec): { value: number } | { error: string } {
  const text = raw.value.trim();
  if (raw.badInput) return { error: `${spec.label} is not a number: enter ${rangeText(spec)}` };
  if (text === '') return { error: `${spec.label} is empty: enter ${rangeText(spec)}` };
  const v = Number(text);
  if (!Number.isFinite(v))
    return { error: `${spec.label} '${text}' is not a number: enter ${rangeText(spec)}` };
  if (spec.integer && !Number.isInteger(v))
    return { error: `${spec.label} must be ${rangeText(spec)}; got ${text}` };
  const low = spec.minExclusive ? v <= spec.min : v < spec.min;
  if (low || v > spec.max) return { error: `${spec.label} must be ${rangeText(spec)}; got ${text}` };
  return { value: v };
}

/** `readNumber` that records a failure for `field` in `errors` and gives NaN. */
function numberReader(errors: FieldError[]): (field: string, raw: RawNumber, spec: NumberSpec) => number {
  return (field, raw, spec) => {
    const got = readNumber(raw, spec);
    if ('error' in got) {
      errors.push({ field, message: got.error });
      return Number.NaN;
    }
    return got.value;
  };
}

export const STEPS: NumberSpec = { label: 'steps', min: 1, max: 5000, integer: true };
export const BATCH: NumberSpec = { label: 'batch', min: 1, max: 64, integer: true };
/** The block's upper end is the model's context length (`n_positions`). */
export const blockSpec = (nPositions: number): NumberSpec => ({
  label: 'block',
  min: 8,
  max: nPositions,
  integer: true,
  note: `the model's context is ${nPositions} tokens`,
});
export const LR: NumberSpec = {
  label: 'learning rate',
  min: 0,
  max: 0.1,
  minExclusive: true,
  note: 'LoRA usually trains at 1e-4 to 1e-2',
};
export const MAX_TOKENS: NumberSpec = { label: 'tokens', min: 1, max: 400, integer: true };
export const TEMPERATURE: NumberSpec = {
  label: 'temperature',
  min: 0,
  max: 5,
  note: '0 picks the most likely token (greedy)',
};
export const topKSpec = (vocabSize: number): NumberSpec => ({
  label: 'top-k',
  min: 0,
  max: vocabSize,
  integer: true,
  note: '0 keeps every token',
});
export const TOP_P: NumberSpec = {
  label: 'top-p',
  min: 0,
  max: 1,
  minExclusive: true,
  note: '1 keeps every token',
};
export const SEED: NumberSpec = { label: 'seed', min: 0, max: 2 ** 31 - 1, integer: true };

export const RANKS = [2, 4, 8, 16] as const;
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,40}$/;

/** Why an adapter name cannot be used, or null. `taken` says where a name already is. */
export function nameProblem(
  name: string,
  taken: (name: string) => string | null,
  reserved: string,
): string | null {
  if (name === '') return 'the adapter needs a name';
  if (!NAME_PATTERN.test(name)) return `adapter name '${name}': use up to 40 letters, digits, - and _`;
  if (name === reserved) return `'${reserved}' names the model without an adapter; choose another name`;
  const where = taken(name);
  return where ? `an adapter named '${name}' ${where}; choose another name or delete it` : null;
}

/** The train form as the page reads it. */
export interface TrainForm {
  name: string;
  rank: string;
  steps: RawNumber;
  batch: RawNumber;
  block: RawNumber;
  lr: RawNumber;
  targets: string[];
  /** Characters of the pasted text in the model's vocabulary, when training on pasted text. */
  textLength?: number;
}

/** What the model and the page's state allow. */
export interface TrainContext {
  nPositions: number;
  /** Where an adapter name is already used ("is in this session", "is saved in this browser"), or null. */
  taken: (name: string) => string | null;
  reserved: string;
}

/** Settings of one training run (what `Session.train` takes). */
export interface TrainSettings {
  name: string;
  steps: number;
  batchSize: number;
  blockSize: number;
  lr: number;
  r: number;
  targets: string[];
  /** Compiled steps (`lr.compile`, the default); false runs every step eagerly. */
  compile?: boolean;
}

/**
 * Checks the whole train form; `settings` only when there is no error. Field ids are the page's
 * control ids (`steps`, `lr`, `targets`, `text`, …).
 *
 * @example
 * validateTrain({ ...form, lr: { value: '50' } }, ctx).errors;
 * // [{ field: 'lr', message: 'learning rate must be a number greater than 0 and at most 0.1 (…); got 50' }]
 */
export function validateTrain(
  form: TrainForm,
  ctx: TrainContext,
): { settings?: TrainSettings; errors: FieldError[] } {
  const errors: FieldError[] = [];
  const name = form.name.trim();
  const nameError = nameProblem(name, ctx.taken, ctx.reserved);
  if (nameError) errors.push({ field: 'name', message: nameError });
  const r = Number(form.rank);
  if (!(RANKS as readonly number[]).includes(r))
    errors.push({ field: 'rank', message: `rank must be one of ${RANKS.join(', ')}; got ${form.rank}` });
  const num = numberReader(errors);
  const steps = num('steps', form.steps, STEPS);
  const batchSize = num('batch', form.batch, BATCH);
  const blockSize = num('block', form.block, blockSpec(ctx.nPositions));
  const lr = num('lr', form.lr, LR);
  if (form.targets.length === 0)
    errors.push({ field: 'targets', message: 'choose at least one module to adapt' });
  if (form.textLength !== undefined && Number.isFinite(blockSize) && form.textLength < blockSize + 1) {
    errors.push({
      field: 'text',
      message: `the text has ${form.textLength} tokens (characters for a char model); paste at least ${blockSize + 1} (block + 1), or lower the block`,
    });
  }
  if (errors.length > 0) return { errors };
  return { errors, settings: { name, steps, batchSize, blockSize, lr, r, targets: [...form.targets] } };
}

/**
 * The same rules for settings that did not come through the form; throws the first problem.
 *
 * @example
 * checkTrainSettings({ ...settings, steps: 0 }, 128); // throws: steps must be a whole number from 1 to 5000; got 0
 */
export function checkTrainSettings(s: TrainSettings, nPositions: number): void {
  const n = (v: number): RawNumber => ({ value: String(v) });
  const { errors } = validateTrain(
    {
      name: s.name,
      rank: String(s.r),
      steps: n(s.steps),
      batch: n(s.batchSize),
      block: n(s.blockSize),
      lr: n(s.lr),
      targets: s.targets,
    },
    { nPositions, taken: () => null, reserved: '' },
  );
  if (errors.length > 0) throw new Error(errors[0].message);
}

/** What the 'quantize base' control offers: float32 weights, or the linear layers in NF4 or int8. */
export const QUANT_CHOICES = ['none', 'nf4', 'int8'] as const;
export type BaseQuant = (typeof QUANT_CHOICES)[number];

/**
 * Reads the 'quantize base' control: the choice, or the message to show next to it (an unknown
 * value, or a change while a run holds the model).
 *
 * @example
 * readQuant('nf4', { busy: false }); // { value: 'nf4' }
 * readQuant('nf4', { busy: true }).error; // 'the base cannot change while …'
 */
export function readQuant(value: string, ctx: { busy: boolean }): { value: BaseQuant } | { error: string } {
  const choice = QUANT_CHOICES.find((c) => c === value);
  if (!choice) return { error: `quantize base must be one of ${QUANT_CHOICES.join(', ')}; got '${value}'` };
  if (ctx.busy) return { error: 'the base cannot change while a run uses it: wait for it to finish' };
  return { value: choice };
}

/** How the page names a storage choice. */
export function quantLabel(q: BaseQuant): string {
  return q === 'none' ? 'float32' : q === 'nf4' ? 'NF4' : 'int8';
}

/** `modelFootprint`'s numbers, as `describeFootprint` reads them. */
export interface Footprint {
  byType: Partial<Record<string, number>>;
  bytes: number;
  f32Bytes: number;
  quantized: { bytes: number; f32Bytes: number };
}

/**
 * The base's memory by storage type beside what float32 would take, as the page shows it next to
 * the 'quantize base' control.
 *
 * @example
 * describeFootprint({ byType: { nf4: 110592, float32: 66560 }, bytes: 177152, f32Bytes: 852992,
 *   quantized: { bytes: 110592, f32Bytes: 786432 } });
 * // 'base 173.0 KiB (float32: 833.0 KiB) · quantized layers 108.0 KiB, 0.141× of their float32 768.0 KiB · nf4 108.0 KiB + float32 65.0 KiB'
 */
export function describeFootprint(fp: Footprint): string {
  const types = Object.entries(fp.byType)
    .filter((e): e is [string, number] => e[1] !== undefined && e[1] > 0)
    .map(([type, bytes]) => `${type} ${formatBytes(bytes)}`)
    .join(' + ');
  const q = fp.quantized;
  const layers =
    q.f32Bytes > 0
      ? `quantized layers ${formatBytes(q.bytes)}, ${(q.bytes / q.f32Bytes).toFixed(3)}× of their float32 ${formatBytes(q.f32Bytes)}`
      : 'no quantized layers';
  return `base ${formatBytes(fp.bytes)} (float32: ${formatBytes(fp.f32Bytes)}) · ${layers} · ${types}`;
}

/** The generate form as the page reads it. */
export interface GenerateForm {
  prompt: string;
  maxTokens: RawNumber;
  temperature: RawNumber;
  topK: RawNumber;
  topP: RawNumber;
  seed: RawNumber;
  /**
   * 'no repeated 4-gram' ticked, with the prompt's length in tokens and the model's context: a
   * greedy reply then never completes a 4-gram it already holds (the demo's decoding,
   * examples/e2e/batched-greedy.ts), and prompt and reply must fit the context (no sliding
   * window). Absent: off.
   */
  noRepeat?: { promptTokens: number; contextLength: number };
}

/** The n of 'no repeated n-gram': the demo's (and the LoRA paper's E2E decoding's) 4. */
export const NO_REPEAT_NGRAM = 4;

/** Options of one generation (what `Session.generate` takes, besides `base`). */
export interface GenerateSettings {
  prompt: string;
  maxNewTokens: number;
  /** 0: greedy. */
  temperature: number;
  /** 0: off. */
  topK: number;
  /** 1: off. */
  topP: number;
  seed: number;
  /** A greedy reply never completes an n-gram it already holds (0 or absent: off; sampling ignores it). */
  noRepeatNgram?: number;
}

/**
 * Checks the generate form; `settings` only when there is no error.
 *
 * @example
 * validateGenerate({ ...form, topP: { value: '1.5' } }, 65).errors[0].field; // 'top-p'
 */
export function validateGenerate(
  form: GenerateForm,
  vocabSize: number,
): { settings?: GenerateSettings; errors: FieldError[] } {
  const errors: FieldError[] = [];
  if (form.prompt.length === 0)
    errors.push({ field: 'prompt', message: 'the prompt is empty: type the text to continue' });
  const num = numberReader(errors);
  const maxNewTokens = num('max-tokens', form.maxTokens, MAX_TOKENS);
  const temperature = num('temperature', form.temperature, TEMPERATURE);
  const topK = num('top-k', form.topK, topKSpec(vocabSize));
  const topP = num('top-p', form.topP, TOP_P);
  const seed = num('seed', form.seed, SEED);
  const fit = form.noRepeat;
  if (
    fit &&
    errors.length === 0 &&
    temperature === 0 &&
    fit.promptTokens + maxNewTokens > fit.contextLength
  ) {
    const room = fit.contextLength - fit.promptTokens;
    errors.push({
      field: 'max-tokens',
      message: `with no repeated ${NO_REPEAT_NGRAM}-gram the prompt (${fit.promptTokens} tokens) and the reply must fit the model's context of ${fit.contextLength}: ${room > 0 ? `at most ${room} tokens` : 'shorten the prompt'}, or untick it`,
    });
  }
  if (errors.length > 0) return { errors };
  const settings: GenerateSettings = { prompt: form.prompt, maxNewTokens, temperature, topK, topP, seed };
  if (fit) settings.noRepeatNgram = NO_REPEAT_NGRAM;
  return { errors, settings };
}

/**
 * Bytes as the page shows them (binary units).
 *
 * @example
 * formatBytes(1536); // '1.50 KiB'
 */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/**
 * Seconds left as the page shows them.
 *
 * @example
 * formatDuration(75); // '1 min 15 s'
 */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
