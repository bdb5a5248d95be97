/**
 * Corpus BLEU-4 (Papineni et al. 2002) with several references per hypothesis, as the E2E NLG
 * Challenge reports it: n-gram precisions for n = 1…4 clipped by the largest count of the n-gram
 * in any one reference, summed over the corpus; their geometric mean (equal weights); a brevity
 * penalty exp(1 − r/c) when the corpus's hypotheses (c tokens) are shorter than r, the sum of
 * each hypothesis's closest reference length (the shorter on a tie). No smoothing: a corpus with
 * no matching n-gram of some order scores 0.
 */

/** What `corpusBleu` returns. */
export interface BleuScore {
  /** BLEU-4 in [0, 1]. */
  bleu: number;
  /** Clipped n-gram precisions p1…p4. */
  precisions: number[];
  /** The brevity penalty (1 when the hypotheses are not shorter than the references). */
  brevityPenalty: number;
  /** Tokens in all hypotheses (c). */
  hypothesisLength: number;
  /** The effective reference length (r). */
  referenceLength: number;
}

/**
 * The tokens BLEU compares: lower-cased, split on whitespace (the E2E references are already
 * tokenized: "family - friendly .").
 *
 * @example
 * bleuTokens('The Eagle is  near Burger King .'); // ['the', 'eagle', 'is', 'near', 'burger', 'king', '.']
 */
export function bleuTokens(text: string): string[] {
  return text
    .toLowerCase()
    .split(/\s+/)
    .filter((t) => t !== '');
}

/** n-gram → count (the n-gram's tokens joined by a separator no token contains). */
function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const g = tokens.slice(i, i + n).join('\u0001');
    m.set(g, (m.get(g) ?? 0) + 1);
  }
  return m;
}

/**
 * Corpus BLEU-4 of tokenized hypotheses against their references (`references[i]` are the
 * references of `hypotheses[i]`, at least one each).
 *
 * @example
 * corpusBleu([['the', 'cat', 'is', 'on']], [[['the', 'cat', 'is', 'on', 'the', 'mat']]]).bleu; // exp(1 − 6/4) ≈ 0.607
 */
export function corpusBleu(
  hypotheses: readonly (readonly string[])[],
  references: readonly (readonly (readonly string[])[])[],
): BleuScore {
  if (hypotheses.length !== references.length)
    throw new Error(`corpusBleu: ${hypotheses.length} hypotheses but ${references.length} reference lists`);
  const matched = [0, 0, 0, 0];
  const total = [0, 0, 0, 0];
  let c = 0;
  let r = 0;
  hypotheses.forEach((hyp, i) => {
    const refs = references[i];
    if (refs.length === 0) throw new Error(`corpusBleu: hypothesis ${i} has no reference`);
    for (let n = 1; n <= 4; n++) {
      const maxRef = new Map<string, number>();
      for (const ref of refs)
        for (const [g, k] of ngramCounts(ref, n)) maxRef.set(g, Math.max(maxRef.get(g) ?? 0, k));
      for (const [g, k] of ngramCounts(hyp, n)) {
        matched[n - 1] += Math.min(k, maxRef.get(g) ?? 0);
        total[n - 1] += k;
      }
    }
    c += hyp.length;
    // the closest reference length; on a tie the shorter one
    let best = refs[0].length;
    for (const ref of refs) {
      const d = Math.abs(ref.length - hyp.length);
      const bd = Math.abs(best - hyp.length);
      if (d < bd || (d === bd && ref.length < best)) best = ref.length;
    }
    r += best;
  });
  const precisions = matched.map((m, i) => (total[i] === 0 ? 0 : m / total[i]));
  const brevityPenalty = c === 0 ? 0 : c > r ? 1 : Math.exp(1 - r / c);
  const bleu = precisions.some((p) => p === 0)
    ? 0
    : brevityPenalty * Math.exp(precisions.reduce((s, p) => s + Math.log(p), 0) / 4);
  return { bleu, precisions, brevityPenalty, hypothesisLength: c, referenceLength: r };
}
