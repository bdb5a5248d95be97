import type { Generator } from '@lowrank/tensor';

/** One E2E NLG example: a meaning representation and one human reference for it. */
export interface E2EExample {
  /** The meaning representation, e.g. `name : Alimentum | area : city centre`. */
  mr: string;
  /** A human-written sentence expressing it. */
  ref: string;
}

/** The separator between meaning representation and text, as in the E2E files and the LoRA repo. */
export const E2E_SEPARATOR = '||';

/**
 * Parses the E2E files (`mr||ref` one a line, e.g. `name : Alimentum | area : city centre||There is
 * a place ...`). Blank lines are skipped; a line without `||` throws with its line number.
 *
 * @example
 * parseE2E('name : Aromi | eatType : coffee shop||Aromi is a coffee shop.\n');
 * // [{ mr: 'name : Aromi | eatType : coffee shop', ref: 'Aromi is a coffee shop.' }]
 */
export function parseE2E(text: string): E2EExample[] {
  const out: E2EExample[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    const at = line.indexOf(E2E_SEPARATOR);
    if (at < 0) throw new Error(`parseE2E: line ${i + 1} has no '${E2E_SEPARATOR}': ${line.slice(0, 60)}`);
    out.push({ mr: line.slice(0, at).trim(), ref: line.slice(at + E2E_SEPARATOR.length).trim() });
  });
  return out;
}

/**
 * Groups references by meaning representation, in first-seen order (for multi-reference metrics).
 *
 * @example
 * groupByMr([{ mr: 'a', ref: 'x' }, { mr: 'a', ref: 'y' }]); // [{ mr: 'a', refs: ['x', 'y'] }]
 */
export function groupByMr(examples: readonly E2EExample[]): {
  /** The meaning representation. */
  mr: string;
  /** Its references, in file order. */
  refs: string[];
}[] {
  const groups = new Map<string, string[]>();
  for (const e of examples) {
    const g = groups.get(e.mr);
    if (g) g.push(e.ref);
    else groups.set(e.mr, [e.ref]);
  }
  return [...groups].map(([mr, refs]) => ({ mr, refs }));
}

/**
 * The text a language model is trained on for one example; generation prompts with `e2ePrompt`.
 *
 * @example
 * e2eText({ mr: 'name : Aromi', ref: 'Aromi.' }); // "name : Aromi||Aromi.\n"
 */
export function e2eText(e: E2EExample): string {
  return `${e2ePrompt(e.mr)}${e.ref}\n`;
}
/**
 * The prompt for a meaning representation: `mr` followed by the separator.
 *
 * @example
 * e2ePrompt('name : Aromi'); // "name : Aromi||"
 */
export function e2ePrompt(mr: string): string {
  return `${mr}${E2E_SEPARATOR}`;
}

/** A batch of token windows: `ids` and `labels` are [batch, block] int32 in row-major order. */
export interface TokenBatch {
  /** The token ids, [batch, block] row-major. */
  ids: Int32Array;
  /** `ids` where the mask is set (all of them without a mask), −100 (ignored) elsewhere. */
  labels: Int32Array;
  /** Number of windows. */
  batch: number;
  /** Tokens per window. */
  block: number;
}

/**
 * Random windows of `block` tokens from one long token stream (nanoGPT's `get_batch`). The model
 * shifts labels itself (HF convention), so a window is both input and label; with `mask` (one
 * entry per token), tokens whose mask is 0 get label −100 and add nothing to the loss; a batch
 * in which the mask keeps no token to predict (its mean loss would be 0/0) is drawn again, and
 * 100 such draws in a row throw.
 *
 * @example
 * const { ids } = randomWindows(tokens, 8, 128, new lr.Generator(0)); // 8 windows of 128 tokens
 */
export function randomWindows(
  tokens: ArrayLike<number>,
  batch: number,
  block: number,
  gen: Generator,
  mask?: ArrayLike<number>,
): TokenBatch {
  if (tokens.length < block) {
    throw new Error(`randomWindows: the stream has ${tokens.length} tokens, fewer than block ${block}`);
  }
  if (mask && mask.length !== tokens.length) {
    throw new Error(`randomWindows: mask has ${mask.length} entries for ${tokens.length} tokens`);
  }
  const ids = new Int32Array(batch * block);
  const labels = new Int32Array(batch * block);
  for (let attempt = 0; ; attempt++) {
    let counted = 0;
    for (let b = 0; b < batch; b++) {
      const start = gen.nextInt(0, tokens.length - block + 1);
      for (let t = 0; t < block; t++) {
        const id = tokens[start + t];
        ids[b * block + t] = id;
        const kept = !mask || mask[start + t];
        labels[b * block + t] = kept ? id : -100;
        // the model shifts labels: a window's first label predicts nothing
        if (kept && t > 0) counted++;
      }
    }
    // a batch whose mask keeps no predicted token has a 0/0 mean loss (NaN): draw it again
    if (counted > 0 || block < 2) break;
    if (attempt === 99) {
      throw new Error(
        `randomWindows: 100 random batches of ${batch} × ${block} tokens held no masked-in token to predict; the mask selects too few tokens for this block size (${countSet(mask)} of ${tokens.length})`,
      );
    }
  }
  return { ids, labels, batch, block };
}

function countSet(mask: ArrayLike<number> | undefined): number {
  let n = 0;
  if (mask) for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  return n;
}

/**
 * E2E examples as one token stream for causal-LM fine-tuning, with a mask that is 1 on the
 * reference text (and its newline) and 0 on the meaning representation and `||`: the loss is
 * on the target only, as in the LoRA paper's E2E runs.
 *
 * @example
 * const { tokens, targetMask } = e2eStream(parseE2E(text), (s) => tok.encode(s));
 */
export function e2eStream(
  examples: readonly E2EExample[],
  encode: (text: string) => number[],
): {
  /** Every example's prompt and reference, encoded and concatenated. */
  tokens: Int32Array;
  /** 1 on reference tokens (what is trained), 0 on prompt tokens, one entry per token. */
  targetMask: Uint8Array;
} {
  const tokens: number[] = [];
  const mask: number[] = [];
  for (const e of examples) {
    const prompt = encode(e2ePrompt(e.mr));
    const target = encode(`${e.ref}\n`);
    for (const id of prompt) {
      tokens.push(id);
      mask.push(0);
    }
    for (const id of target) {
      tokens.push(id);
      mask.push(1);
    }
  }
  return { tokens: Int32Array.from(tokens), targetMask: Uint8Array.from(mask) };
}

/**
 * Splits a token stream into train and validation parts (the last `fraction` is validation).
 *
 * @example
 * const { train, val } = trainValSplit(Int32Array.from({ length: 100 }, (_, i) => i)); // 90 / 10
 */
export function trainValSplit(
  tokens: Int32Array,
  fraction = 0.1,
): {
  /** The first part (a view, not a copy). */
  train: Int32Array;
  /** The last `fraction` (a view). */
  val: Int32Array;
} {
  const n = Math.floor(tokens.length * (1 - fraction));
  return { train: tokens.subarray(0, n), val: tokens.subarray(n) };
}
