/**
 * Batched greedy decoding with a key/value cache for prompts of different lengths (left padding,
 * per-row positions and attention masks, as Hugging Face does it), built from the blocks of
 * `GPT2LMHeadModel`. `generate` in @lowrank/models decodes one prompt at a time; scoring E2E needs
 * hundreds of prompts per configuration, so this runs them all in one batch: one forward pass
 * and one small read-back (the last position's logits) per new token for the whole batch.
 * `run.ts --quick` checks it against `generate` (greedy) on the CPU.
 */
import { noGrad } from '../../packages/autograd/src/index.js';
import type { GPT2LMHeadModel, KVCache } from '../../packages/models/src/index.js';
import { fromTypedArray, type Tensor, tidy } from '../../packages/tensor/src/index.js';

/** Options of `greedyBatch`. */
export interface BatchGenerateOptions {
  /** Most new tokens per prompt (also limited by n_positions). */
  maxNewTokens: number;
  /** A row stops once it produced this token (the token is not returned). */
  eosTokenId: number;
}

/** What `greedyBatch` returns. */
export interface BatchGenerateResult {
  /** New tokens of each prompt, without the end-of-text token. */
  tokens: number[][];
  /** Decoding steps run (the longest output, capped by maxNewTokens). */
  steps: number;
}

function disposeCache(cache: KVCache | undefined): void {
  for (const c of cache ?? []) {
    c.k.dispose();
    c.v.dispose();
  }
}

/**
 * Greedy continuation of every prompt. Row i is left-padded by `off_i = Lmax − L_i` tokens that
 * no real position attends to; its positions count from 0 at its first real token, so each row
 * computes what it would compute alone (up to float rounding).
 */
export async function greedyBatch(
  model: GPT2LMHeadModel,
  prompts: readonly (readonly number[])[],
  options: BatchGenerateOptions,
): Promise<BatchGenerateResult> {
  const B = prompts.length;
  const V = model.config.vocab_size;
  const lens = prompts.map((p) => p.length);
  const Lmax = Math.max(...lens);
  if (lens.some((l) => l === 0)) throw new Error('greedyBatch: empty prompt');
  const maxNew = Math.min(options.maxNewTokens, model.config.n_positions - Lmax);
  if (maxNew <= 0) throw new Error(`greedyBatch: prompts of ${Lmax} tokens fill n_positions`);
  const off = lens.map((l) => Lmax - l);
  const device = model.device;
  const tr = model.transformer;
  const wasTraining = model.training;
  model.eval();

  // one forward of `T` new tokens per row at per-row positions; keys run over `total` positions
  const step = (
    ids: Int32Array,
    pos: Int32Array,
    mask: Uint8Array,
    T: number,
    total: number,
    past: KVCache | undefined,
  ): { logits: Tensor; present: KVCache } =>
    noGrad(() =>
      tidy(() => {
        const idT = fromTypedArray(ids, [B, T], { dtype: 'int32', device });
        const posT = fromTypedArray(pos, [B, T], { dtype: 'int32', device });
        const maskT = fromTypedArray(mask, [B, 1, T, total], { dtype: 'bool', device });
        let x = tr.wte.forward(idT).add(tr.wpe.forward(posT));
        const present: KVCache = [];
        for (let l = 0; l < tr.h.length; l++) {
          const r = tr.h.at(l).forward(x, maskT, past?.[l]);
          x = r.out;
          present.push(r.present);
        }
        const last = tr.ln_f.forward(x).slice(1, -1); // [B, 1, C]
        return { logits: last.matmul(model.lmHeadWeight.transpose(0, 1)), present };
      }),
    );

  const out: number[][] = prompts.map(() => []);
  const done = new Array<boolean>(B).fill(false);
  let cache: KVCache | undefined;
  let steps = 0;
  try {
    // prefill: [B, Lmax], left-padded
    const ids = new Int32Array(B * Lmax).fill(options.eosTokenId);
    const pos = new Int32Array(B * Lmax);
    const mask = new Uint8Array(B * Lmax * Lmax);
    for (let i = 0; i < B; i++) {
      for (let j = 0; j < Lmax; j++) {
        if (j >= off[i]) ids[i * Lmax + j] = prompts[i][j - off[i]];
        pos[i * Lmax + j] = Math.max(0, j - off[i]);
        for (let k = 0; k <= j; k++) {
          // real queries see real keys up to themselves; pad queries see themselves (no empty rows)
          mask[(i * Lmax + j) * Lmax + k] = (k >= off[i] && j >= off[i]) || k === j ? 1 : 0;
        }
      }
    }
    let r = step(ids, pos, mask, Lmax, Lmax, undefined);
    cache = r.present;
    for (let s = 0; ; s++) {
      const logits = (await r.logits.data()) as Float32Array;
      r.logits.dispose();
      const next = new Int32Array(B);
      for (let i = 0; i < B; i++) {
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[i * V + v] > logits[i * V + best]) best = v;
        next[i] = best;
        if (!done[i]) {
          if (best === options.eosTokenId) done[i] = true;
          else out[i].push(best);
        }
      }
      steps = s + 1;
      if (done.every(Boolean) || steps >= maxNew) break;
      const total = Lmax + s + 1;
      const p = new Int32Array(B);
      const m = new Uint8Array(B * total);
      for (let i = 0; i < B; i++) {
        p[i] = lens[i] + s;
        for (let k = off[i]; k < total; k++) m[i * total + k] = 1;
      }
      const past = cache;
      r = step(next, p, m, 1, total, past);
      disposeCache(past);
      cache = r.present;
    }
  } finally {
    disposeCache(cache);
    model.train(wasTraining);
  }
  return { tokens: out, steps };
}
