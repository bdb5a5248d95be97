import type { Module } from '@lowrank/nn';
import type { Device, Tensor } from '@lowrank/tensor';
import type { LMForwardOptions, LMOutput } from './gpt2.js';

/**
 * What generation, training and the CLI need from a causal language model (GPT-2, Llama, …):
 * a forward pass with labels and a KV cache, the vocabulary, the context and the stop tokens.
 */
export interface CausalLM extends Module {
  /** The parsed config: every model has these two fields. */
  readonly config: {
    /** Number of token ids. */
    readonly vocab_size: number;
    /** End-of-text id(s) (generation stops on them by default), or null. */
    readonly eos_token_id: number | readonly number[] | null;
  };
  /** Positions the model handles (generation restarts the cache from the last half past it). */
  readonly contextLength: number;
  /** The device the parameters live on. */
  readonly device: Device;
  /** ids [B, T] int32 → logits [B, T, vocab] (loss with labels, cache with useCache/past). */
  forward(ids: Tensor, options?: LMForwardOptions): LMOutput;
}
