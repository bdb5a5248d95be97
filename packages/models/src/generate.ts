import { noGrad } from '@lowrank/autograd';
import { Generator, OpError, type Tensor, tensor, tidy } from '@lowrank/tensor';
import type { CausalLM } from './causal-lm.js';
import type { KVCache } from './gpt2.js';
import type { PromptCache } from './prompt-cache.js';
import { checkSamplingOptions, type SamplingOptions, sampleToken } from './sampling.js';

/** Options of `generate`: sampling, length, seed, stop token, streaming. */
export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to produce (required: generation always ends). */
  maxNewTokens: number;
  /** Seed for sampling (a fresh generator, so a call is reproducible); default 0. */
  seed?: number;
  /** Or a generator to draw from (its state advances). */
  generator?: Generator;
  /** Stop after producing this token, or any of these (it is included in the output). Default: the config's eos. */
  eosTokenId?: number | readonly number[] | null;
  /** Called with each new token as it is chosen (streaming). */
  onToken?: (id: number) => void;
  /**
   * A cache kept across calls (a chat): the prompt's prefix it already holds is not run again,
   * and it keeps this call's tokens for the next one (`PromptCache`; free it with `dispose()`).
   */
  cache?: PromptCache;
}

/** What `generate` returns. */
export interface GenerateResult {
  /** The new tokens only. */
  tokens: number[];
  /** Why generation stopped: the end-of-text token, or the length limit. */
  stoppedBy: 'eos' | 'maxNewTokens';
}

/**
 * Autoregressive generation for one prompt with a key/value cache: the prompt is run once, then
 * each step feeds only the newest token. When the context fills (`contextLength`: n_positions, max_position_embeddings), the cache is
 * rebuilt from the last half of the window and generation goes on. Runs without gradients.
 *
 * @example
 * ```ts
 * const { tokens } = await generate(model, tok.encode('ROMEO:'), { maxNewTokens: 50, topK: 20, seed: 1 });
 * ```
 */
export async function generate(
  model: CausalLM,
  prompt: readonly number[],
  options: GenerateOptions,
): Promise<GenerateResult> {
  checkSamplingOptions(options);
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0) {
    throw new OpError('generate', `maxNewTokens must be an integer ≥ 0, got ${options.maxNewTokens}`);
  }
  if (prompt.length === 0) throw new OpError('generate', 'the prompt is empty (give at least one token)');
  const V = model.config.vocab_size;
  for (const id of prompt) {
    if (!Number.isInteger(id) || id < 0 || id >= V)
      throw new OpError('generate', `prompt token ${id} is outside [0, ${V})`);
  }
  const gen = options.generator ?? new Generator(options.seed ?? 0);
  const eos = stopSet(options.eosTokenId === undefined ? model.config.eos_token_id : options.eosTokenId);
  const nPos = model.contextLength;
  const device = model.device;
  const wasTraining = model.training;
  model.eval();
  const all = [...prompt];
  const out: number[] = [];
  const kept = options.cache;
  let cache: KVCache | undefined;
  /** The tokens whose keys and values `cache` holds, by position. */
  let cached: number[] = [];
  let feed = all.slice(-nPos);
  if (kept) {
    const shared = feed.length === all.length ? kept.sharedPrefix(all) : 0; // a cut prompt moved every position
    kept.truncate(shared);
    kept.reused = kept.kv ? shared : 0;
    cache = kept.kv;
    cached = kept.kv ? kept.tokens.slice() : [];
    kept.kv = undefined;
    kept.tokens = [];
    feed = all.slice(cached.length);
  }
  let stoppedBy: GenerateResult['stoppedBy'] = 'maxNewTokens';
  try {
    while (out.length < options.maxNewTokens) {
      const pastLen = cache?.[0].k.shape[2] ?? 0;
      if (pastLen + feed.length > nPos) {
        // context full: restart from the last half of the window
        disposeCache(cache);
        cache = undefined;
        cached = [];
        feed = all.slice(-Math.max(1, Math.floor(nPos / 2)));
      }
      const past = cache;
      const step = noGrad(() =>
        tidy(() => {
          const ids = tensor([feed], { dtype: 'int32', device });
          const r = model.forward(ids, { past, useCache: true, lastOnly: true });
          return { logits: r.logits, present: r.present ?? [] };
        }),
      );
      disposeCache(past);
      cache = step.present;
      cached.push(...feed);
      const row = await step.logits.data();
      step.logits.dispose();
      const next = sampleToken(row as Float32Array, options, gen);
      out.push(next);
      all.push(next);
      options.onToken?.(next);
      if (eos.has(next)) {
        stoppedBy = 'eos';
        break;
      }
      feed = [next];
    }
  } finally {
    if (kept && cache) {
      kept.kv = cache;
      kept.tokens = cached;
    } else disposeCache(cache);
    model.train(wasTraining);
  }
  return { tokens: out, stoppedBy };
}

function stopSet(eos: number | readonly number[] | null): Set<number> {
  return new Set(eos === null ? [] : typeof eos === 'number' ? [eos] : eos);
}

function disposeCache(cache: KVCache | undefined): void {
  for (const c of cache ?? []) {
    c.k.dispose();
    c.v.dispose();
  }
}

/**
 * Generation without a cache (the whole sequence each step): the reference the cached path is tested against.
 *
 * @example
 * const a = await generate(model, prompt, { maxNewTokens: 20, greedy: true });
 * const b = await generateNoCache(model, prompt, { maxNewTokens: 20, greedy: true }); // same tokens
 */
export async function generateNoCache(
  model: CausalLM,
  prompt: readonly number[],
  options: GenerateOptions,
): Promise<GenerateResult> {
  checkSamplingOptions(options);
  const gen = options.generator ?? new Generator(options.seed ?? 0);
  const eos = stopSet(options.eosTokenId === undefined ? model.config.eos_token_id : options.eosTokenId);
  const device = model.device;
  const wasTraining = model.training;
  model.eval();
  const all = [...prompt];
  const out: number[] = [];
  try {
    while (out.length < options.maxNewTokens) {
      const window = all.slice(-model.contextLength);
      const logits: Tensor = noGrad(() =>
        tidy(() => model.forward(tensor([window], { dtype: 'int32', device }), { lastOnly: true }).logits),
      );
      const row = await logits.data();
      logits.dispose();
      const next = sampleToken(row as Float32Array, options, gen);
      out.push(next);
      all.push(next);
      if (eos.has(next)) return { tokens: out, stoppedBy: 'eos' };
    }
  } finally {
    model.train(wasTraining);
  }
  return { tokens: out, stoppedBy: 'maxNewTokens' };
}
