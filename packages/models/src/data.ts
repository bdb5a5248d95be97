import type { Generator } from '@lowrank/tensor';

/** One E2E NLG example: a meaning representation and one human reference for it. */
export interface E2EExample {
  mr: string;
  ref: string;
}

/** The separator between meaning representation and text, as in the E2E files and the LoRA repo. */
export const E2E_SEPARATOR = '||';

/**
 * Parses the E2E files (`mr||ref` one a line, e.g. `name : Alimentum | area : city centre||There is
 * a place ...`). Blank lines are skipped; a line without `||` throws with its line number.
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

/** Groups references by meaning representation, in first-seen order (for multi-reference metrics). */
export function groupByMr(examples: readonly E2EExample[]): { mr: string; refs: string[] }[] {
  const groups = new Map<string, string[]>();
  for (const e of examples) {
    const g = groups.get(e.mr);
    if (g) g.push(e.ref);
    else groups.set(e.mr, [e.ref]);
  }
  return [...groups].map(([mr, refs]) => ({ mr, refs }));
}

/** The text a language model is trained on for one example; generation prompts with `e2ePrompt`. */
export function e2eText(e: E2EExample): string {
  return `${e2ePrompt(e.mr)}${e.ref}\n`;
}
export function e2ePrompt(mr: string): string {
  return `${mr}${E2E_SEPARATOR}`;
}

/** A batch of token windows: `ids` is [batch, block] int32 in row-major order. */
export interface TokenBatch {
  ids: Int32Array;
  batch: number;
  block: number;
}

/**
 * Random windows of `block` tokens from one long token stream (nanoGPT's `get_batch`). The model
 * shifts labels itself (HF convention), so a window is both input and label.
 */
export function randomWindows(
  tokens: ArrayLike<number>,
  batch: number,
  block: number,
  gen: Generator,
): TokenBatch {
  if (tokens.length < block) {
    throw new Error(`randomWindows: the stream has ${tokens.length} tokens, fewer than block ${block}`);
  }
  const ids = new Int32Array(batch * block);
  for (let b = 0; b < batch; b++) {
    const start = gen.nextInt(0, tokens.length - block + 1);
    for (let t = 0; t < block; t++) ids[b * block + t] = tokens[start + t];
  }
  return { ids, batch, block };
}

/** Splits a token stream into train and validation parts (the last `fraction` is validation). */
export function trainValSplit(tokens: Int32Array, fraction = 0.1): { train: Int32Array; val: Int32Array } {
  const n = Math.floor(tokens.length * (1 - fraction));
  return { train: tokens.subarray(0, n), val: tokens.subarray(n) };
}
