import type { Generator } from '@lowrank/tensor';

/** How the next token is chosen from the logits. */
export interface SamplingOptions {
  /** Divides the logits; 0 (or `greedy: true`) picks the most likely token. Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 or undefined: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 or undefined: all). */
  topP?: number;
  /** Always take the argmax (same as temperature 0). */
  greedy?: boolean;
}

/**
 * Checks sampling options, naming the one that is wrong.
 *
 * @example
 * checkSamplingOptions({ topP: 1.5 }); // throws: generate: topP must be in (0, 1], …
 */
export function checkSamplingOptions(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) {
    throw new Error(`generate: temperature must be a finite number ≥ 0, got ${o.temperature}`);
  }
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) {
    throw new Error(`generate: topK must be an integer ≥ 0, got ${o.topK}`);
  }
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) {
    throw new Error(`generate: topP must be in (0, 1], got ${o.topP}`);
  }
}

/**
 * Picks the next token from one row of logits, in Hugging Face's order: temperature, then top-k,
 * then top-p (nucleus), then a draw from the renormalised distribution with `gen`. Runs on the
 * host: one row of `vocab` numbers per step is small next to the forward pass.
 *
 * @example
 * sampleToken([0, 5, 1], { greedy: true }, new lr.Generator(0)); // 1
 * sampleToken(logits, { temperature: 0.8, topK: 40, topP: 0.95 }, gen);
 */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, gen: Generator): number {
  const n = logits.length;
  const temperature = o.temperature ?? 1;
  if (o.greedy || temperature === 0) return argmax(logits);
  // candidates sorted by logit, descending (ties: lower id first, deterministic)
  let order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK && o.topK < n) order = order.slice(0, o.topK);
  const top = logits[order[0]];
  let probs = order.map((i) => Math.exp((logits[i] - top) / temperature));
  let total = probs.reduce((s, p) => s + p, 0);
  const topP = o.topP ?? 1;
  if (topP < 1) {
    // keep tokens until the cumulative probability reaches topP (always at least one)
    let cum = 0;
    let keep = 0;
    while (keep < probs.length) {
      cum += probs[keep] / total;
      keep++;
      if (cum >= topP) break;
    }
    order = order.slice(0, keep);
    probs = probs.slice(0, keep);
    total = probs.reduce((s, p) => s + p, 0);
  }
  let u = gen.nextFloat() * total;
  for (let i = 0; i < probs.length; i++) {
    u -= probs[i];
    if (u < 0) return order[i];
  }
  return order[order.length - 1];
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
