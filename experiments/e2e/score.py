#!/usr/bin/env python3
"""Scores the E2E generations written by run.ts: BLEU and ROUGE-L against ALL references of each
meaning representation.

  python3 experiments/e2e/score.py OUT_DIR          (reads OUT_DIR/generations.jsonl, writes OUT_DIR/scores.json)
  python3 experiments/e2e/score.py --self-test

BLEU: sacrebleu's corpus BLEU (13a tokenizer, multi-reference; MRs have different numbers of
references, so the reference streams are padded with None, which sacrebleu skips).
ROUGE-L: the LCS-based F-measure as in pycocoevalcap (used by the E2E challenge's measure_scores.py
and so by the LoRA paper): per hypothesis, precision and recall are each the maximum over its
references of LCS/len, F = (1 + β²)·P·R / (R + β²·P) with β = 1.2; the corpus score is the mean
over hypotheses, ×100. Tokens: lower-cased, whitespace-split (the E2E references are already
tokenized: "Aromi is a coffee shop ." ).
"""

import json
import sys
from collections import defaultdict


def lcs(a, b):
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(hyp, refs, beta=1.2):
    """pycocoevalcap's ROUGE-L of one hypothesis against several references (0..1)."""
    h = hyp.lower().split()
    if not h:
        return 0.0
    precs, recs = [], []
    for ref in refs:
        r = ref.lower().split()
        m = lcs(h, r)
        precs.append(m / len(h))
        recs.append(m / len(r) if r else 0.0)
    p, r = max(precs), max(recs)
    if p == 0 or r == 0:
        return 0.0
    return ((1 + beta**2) * p * r) / (r + beta**2 * p)


def bleu(hyps, refs_per_hyp):
    import sacrebleu

    n = max(len(r) for r in refs_per_hyp)
    streams = [[refs[k] if k < len(refs) else None for refs in refs_per_hyp] for k in range(n)]
    b = sacrebleu.corpus_bleu(hyps, streams)
    return b.score, str(b), sacrebleu.__version__


def self_test():
    assert lcs("a b c d".split(), "a c d".split()) == 3
    assert lcs([], ["a"]) == 0
    assert abs(rouge_l("the cat sat", ["the cat sat"]) - 1.0) < 1e-12
    # P = 2/3, R = 2/4 against the 2nd ref; the 1st ref gives P = 1/3, R = 1/2: max P = 2/3, max R = 1/2
    p, r, b2 = 2 / 3, 1 / 2, 1.44
    want = (1 + b2) * p * r / (r + b2 * p)
    got = rouge_l("the dog sat", ["a dog", "the big cat sat"])
    assert abs(got - want) < 1e-12, (got, want)
    assert rouge_l("", ["x"]) == 0.0
    try:
        score, _, _ = bleu(["the cat sat on the mat ."], [["the cat sat on the mat .", "a cat"]])
        assert abs(score - 100) < 1e-9, score
    except ImportError:
        print("sacrebleu not installed here: BLEU not self-tested")
    print("score.py self-test ok")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    by_config = defaultdict(list)
    with open(f"{out}/generations.jsonl", encoding="utf8") as f:
        for line in f:
            if line.strip():
                g = json.loads(line)
                by_config[g["config"]].append(g)
    scores = {}
    for name, gens in by_config.items():
        gens.sort(key=lambda g: g["i"])
        hyps = [g["output"] for g in gens]
        refs = [g["refs"] for g in gens]
        b, sig, version = bleu(hyps, refs)
        rl = 100 * sum(rouge_l(h, r) for h, r in zip(hyps, refs)) / len(hyps)
        scores[name] = {"bleu": b, "rougeL": rl, "n": len(hyps), "bleuDetail": sig}
        print(f"{name:16s} BLEU {b:6.2f}  ROUGE-L {rl:6.2f}  ({len(hyps)} MRs)  {sig}")
    with open(f"{out}/scores.json", "w", encoding="utf8") as f:
        json.dump({"sacrebleu": version, "rougeL": "pycocoevalcap-style LCS F (beta 1.2), lower-cased, whitespace tokens", "scores": scores}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
