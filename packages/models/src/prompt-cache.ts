import { noGrad } from '@lowrank/autograd';
import { tidy } from '@lowrank/tensor';
import type { KVCache } from './gpt2.js';

/**
 * A key/value cache kept between `generate` calls (`GenerateOptions.cache`), for a conversation
 * whose every prompt extends the last one (a chat: the history, the reply, the next message).
 * Entry i of the cache holds the keys and values of `tokens[i]` at position i. A call keeps the
 * longest common prefix of `tokens` and its prompt, feeds only the rest, and leaves the cache
 * holding everything it fed; a prompt that shares nothing starts it afresh.
 *
 * @example
 * const cache = new PromptCache();
 * await generate(model, turn1, { maxNewTokens: 64, cache });
 * await generate(model, turn2, { maxNewTokens: 64, cache }); // turn2 = turn1 + reply + …: only the new tokens are run
 * cache.reused; // tokens the second call did not run again
 * cache.dispose();
 */
export class PromptCache {
  /** The tokens the cache holds, by position. */
  tokens: number[] = [];
  /** Their keys and values, one entry per layer ([B, heads, tokens.length, head_dim] each); undefined when empty. */
  kv: KVCache | undefined = undefined;
  /** Tokens of the last call's prompt taken from the cache (0 when it started afresh). */
  reused = 0;

  /**
   * Keeps the first `n` positions (frees the rest): the part of the cache a new prompt shares.
   * @internal used by `generate`
   */
  truncate(n: number): void {
    if (n >= this.tokens.length) return;
    const kv = this.kv;
    if (n === 0 || !kv) {
      this.dispose();
      return;
    }
    // copies of the first n positions (tidy frees the slice views); then the old entries go
    this.kv = noGrad(() =>
      tidy(() => kv.map((c) => ({ k: c.k.slice(2, 0, n).contiguous(), v: c.v.slice(2, 0, n).contiguous() }))),
    );
    for (const c of kv) {
      c.k.dispose();
      c.v.dispose();
    }
    this.tokens = this.tokens.slice(0, n);
  }

  /** The length of the common prefix of the cached tokens and `prompt`, at most `prompt.length − 1` (a call feeds one token at least). */
  sharedPrefix(prompt: readonly number[]): number {
    const max = Math.min(this.tokens.length, prompt.length - 1);
    let n = 0;
    while (n < max && this.tokens[n] === prompt[n]) n++;
    return n;
  }

  /** Frees the keys and values; the cache is empty afterwards. */
  dispose(): void {
    for (const c of this.kv ?? []) {
      c.k.dispose();
      c.v.dispose();
    }
    this.kv = undefined;
    this.tokens = [];
  }
}
