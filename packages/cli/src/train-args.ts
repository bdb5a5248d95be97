/**
 * The arguments of `lowrank train`: their defaults and the one validation every source goes
 * through (flags are checked by commander as they are parsed; a `--config` JSON file and the
 * `train_args.json` of a resumed run are checked here, so a hand-edited or corrupted file is
 * refused with the key and what was expected, not trained with).
 */

/** Every argument of a training run, as saved in its `train_args.json`. */
export interface TrainArgs {
  data: string;
  format: 'text' | 'e2e';
  out: string;
  init?: string;
  model?: string;
  tokenizer: 'char' | 'byte' | 'gpt2';
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nPositions: number;
  dropout: number;
  lora: boolean;
  r: number;
  alpha: number;
  targets: string[];
  loraDropout: number;
  steps: number;
  batchSize: number;
  blockSize: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  gradClip: number;
  seed: number;
  saveEvery: number;
  evalEvery: number;
  device: string;
  allowNonfinite: boolean;
  finalEval: boolean;
  /** Compiled steps (lr.compile; `--no-compile`: eager steps). */
  compile: boolean;
  /** Micro-batches of `batchSize` per optimizer step (gradient accumulation; 1: none). */
  gradAccum: number;
  /** With `lora`: store the frozen base in NF4 or int8 (QLoRA; blocks of 64); absent: float32. */
  quantize?: 'nf4' | 'int8';
}

/** The defaults (`lowrank train --help` shows them). */
export const TRAIN_DEFAULTS: Omit<TrainArgs, 'data' | 'out'> = {
  format: 'text',
  tokenizer: 'char',
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nPositions: 128,
  dropout: 0,
  lora: false,
  r: 8,
  alpha: 16,
  targets: ['c_attn'],
  loraDropout: 0,
  steps: 100,
  batchSize: 8,
  blockSize: 64,
  lr: 1e-3,
  warmup: 0,
  weightDecay: 0.01,
  gradClip: 1,
  seed: 0,
  saveEvery: 50,
  evalEvery: 0,
  device: 'auto',
  allowNonfinite: false,
  finalEval: true,
  compile: true,
  gradAccum: 1,
};

type Check = (v: unknown) => string | null;

const integer =
  (min: number): Check =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min ? null : `an integer ≥ ${min}`;
const number =
  (min: number, max = Number.POSITIVE_INFINITY): Check =>
  (v) =>
    typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max
      ? null
      : `a number in [${min}, ${max}]`;
const oneOf =
  (...choices: string[]): Check =>
  (v) =>
    typeof v === 'string' && choices.includes(v) ? null : `one of ${choices.map((c) => `'${c}'`).join(', ')}`;
const text: Check = (v) => (typeof v === 'string' && v.length > 0 ? null : 'a non-empty string');
const flag: Check = (v) => (typeof v === 'boolean' ? null : 'true or false');
const names: Check = (v) =>
  Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' && s.length > 0)
    ? null
    : 'a non-empty list of module names';

/** What each key must hold (the same bounds as the command-line flags). */
const CHECKS: Record<keyof TrainArgs, Check> = {
  data: text,
  out: text,
  init: text,
  model: text,
  format: oneOf('text', 'e2e'),
  tokenizer: oneOf('char', 'byte', 'gpt2'),
  nEmbd: integer(1),
  nLayer: integer(1),
  nHead: integer(1),
  nPositions: integer(1),
  dropout: number(0, 0.99),
  lora: flag,
  r: integer(1),
  alpha: number(0),
  targets: names,
  loraDropout: number(0, 0.99),
  steps: integer(1),
  batchSize: integer(1),
  blockSize: integer(2),
  lr: number(0),
  warmup: integer(0),
  weightDecay: number(0),
  gradClip: number(0),
  seed: integer(0),
  saveEvery: integer(1),
  evalEvery: integer(0),
  device: oneOf('auto', 'cpu', 'webgpu'),
  allowNonfinite: flag,
  finalEval: flag,
  compile: flag,
  gradAccum: integer(1),
  quantize: oneOf('nf4', 'int8'),
};

/**
 * Checks a parsed JSON object (from `source`, named in errors) as training arguments: no unknown
 * key, and every key present holds what its flag accepts. With `complete`, the required keys
 * (everything but `init`, `model` and `quantize`) must be present too. Returns the error lines (empty: valid).
 *
 * @example
 * checkTrainArgs({ steps: -7 }, 'run/train_args.json', false); // ["run/train_args.json: 'steps' must be an integer ≥ 1, got -7"]
 */
export function checkTrainArgs(json: Record<string, unknown>, source: string, complete: boolean): string[] {
  const errors: string[] = [];
  for (const [k, v] of Object.entries(json)) {
    const check = CHECKS[k as keyof TrainArgs];
    if (!check) {
      errors.push(`${source}: unknown key '${k}'`);
      continue;
    }
    const expected = check(v);
    if (expected) errors.push(`${source}: '${k}' must be ${expected}, got ${JSON.stringify(v)}`);
  }
  if (complete) {
    for (const k of Object.keys(CHECKS)) {
      // allowNonfinite, finalEval, compile and gradAccum came later than the first saved runs: absent
      // means the default; quantize is absent for a float32 base
      if (['init', 'model', 'allowNonfinite', 'finalEval', 'compile', 'gradAccum', 'quantize'].includes(k))
        continue;
      if (!(k in json)) errors.push(`${source}: '${k}' is missing`);
    }
  }
  return errors;
}
