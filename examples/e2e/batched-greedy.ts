import * as lr from 'lowrank';

/**
 * Greedy decoding of many prompts at once, with the key/value cache: prompts of the same token
 * length go through the model as one batch [B, T] (no padding, so no attention mask is needed),
 * then one token per sequence per step until every sequence has produced a stop token or
 * `maxNewTokens`. Each result is cut before its first stop token. The tokens are those of
 * `lr.generate(model, prompt, { greedy: true })` for each prompt alone (to float rounding of a
 * batched matmul); the demo's BLEU evaluation decodes its 50 test prompts in ≈15 batches.
 *
 * `noRepeatNgram: n`, like Hugging Face's `no_repeat_ngram_size` but over the reply only (not the
 * prompt, whose names a data-to-text reply copies): a token that would complete an n-gram already
 * in the reply is never chosen, which stops a small model's greedy loops ("It is located near
 * X . It is located near X .").
 *
 * @example
 * const outs = await greedyByLength(model, prompts.map((p) => tok.encode(p)), { maxNewTokens: 60, stopIds: newlineIds });
 */
export async function greedyByLength(
  model: lr.CausalLM,
  prompts: readonly (readonly number[])[],
  options: { maxNewTokens: number; stopIds: ReadonlySet<number>; noRepeatNgram?: number },
): Promise<number[][]> {
  const byLength = new Map<number, number[]>();
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new Error(`greedyByLength: prompt ${i} is empty`);
    if (p.length + options.maxNewTokens > model.contextLength)
      throw new Error(
        `greedyByLength: prompt ${i} (${p.length} tokens) + ${options.maxNewTokens} new tokens exceeds the context (${model.contextLength})`,
      );
    byLength.set(p.length, [...(byLength.get(p.length) ?? []), i]);
  });
  const n = options.noRepeatNgram ?? 0;
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`greedyByLength: noRepeatNgram must be an integer ≥ 0, got ${options.noRepeatNgram}`);
  const results: number[][] = prompts.map(() => []);
  const wasTraining = model.training;
  model.eval();
  const device = model.device;
  try {
    for (const [T, members] of byLength) {
      const B = members.length;
      const done = new Array<boolean>(B).fill(false);
      let feed = members.flatMap((i) => [...prompts[i]]);
      let width = T;
      let cache: lr.KVCache | undefined;
      for (let step = 0; step < options.maxNewTokens && done.includes(false); step++) {
        const past = cache;
        const out = lr.noGrad(() =>
          lr.tidy(() => {
            const ids = lr.fromTypedArray(Int32Array.from(feed), [B, width], { dtype: 'int32', device });
            const r = model.forward(ids, { past, useCache: true, lastOnly: true });
            const rows = r.logits.reshape(B, -1);
            return { next: n > 0 ? rows : rows.argmax(-1), present: r.present ?? [] };
          }),
        );
        for (const c of past ?? []) {
          c.k.dispose();
          c.v.dispose();
        }
        cache = out.present;
        const data = await out.next.data();
        out.next.dispose();
        const next =
          n > 0
            ? members.map((i, b) => {
                const V = data.length / B;
                const row = (data as Float32Array).subarray(b * V, (b + 1) * V);
                return argmaxAllowed(row, bannedNext(results[i], n));
              })
            : Array.from(data as Int32Array);
        next.forEach((id, b) => {
          if (done[b]) return;
          if (options.stopIds.has(id)) done[b] = true;
          else results[members[b]].push(id);
        });
        feed = next;
        width = 1;
      }
      for (const c of cache ?? []) {
        c.k.dispose();
        c.v.dispose();
      }
    }
  } finally {
    model.train(wasTraining);
  }
  return results;
}

/**
 * The tokens that would complete an n-gram already in `seq`: those that followed each earlier
 * occurrence of its last n−1 tokens (HF's `_get_ngrams` / `_calc_banned_ngram_tokens`).
 *
 * @example
 * bannedNext([5, 6, 7, 5, 6], 3); // Set {7}: "5 6" was followed by 7
 */
export function bannedNext(seq: readonly number[], n: number): Set<number> {
  const banned = new Set<number>();
  if (n < 1 || seq.length < n - 1) return banned;
  const start = seq.length - (n - 1);
  for (let i = 0; i + n <= seq.length; i++) {
    let same = true;
    for (let j = 0; j < n - 1 && same; j++) same = seq[i + j] === seq[start + j];
    if (same) banned.add(seq[i + n - 1]);
  }
  return banned;
}

/** The index of the largest value not in `banned` (the first on a tie). */
function argmaxAllowed(row: Float32Array, banned: ReadonlySet<number>): number {
  let best = -1;
  for (let v = 0; v < row.length; v++) if (!banned.has(v) && (best < 0 || row[v] > row[best])) best = v;
  if (best < 0) throw new Error('greedyByLength: every token is banned by noRepeatNgram');
  return best;
}
