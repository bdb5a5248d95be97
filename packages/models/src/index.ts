/**
 * @lowrank/models — GPT-2 (Hugging Face compatible), an encoder classifier, tokenizers, data
 * helpers, generation and the training loop of the demo and CLI. File helpers are in
 * `@lowrank/models/node`.
 *
 * @module @lowrank/models
 */

export * from './auto.js';
export * from './causal-lm.js';
export * from './config.js';
export * from './data.js';
export * from './dropout-generator.js';
export * from './encoder.js';
export * from './generate.js';
export * from './gpt2.js';
export * from './half-load.js';
export * from './hf.js';
export * from './hf-tokenizer.js';
export * from './llama.js';
export * from './llama-config.js';
export * from './loading-source.js';
export * from './plot.js';
export * from './prompt-cache.js';
export * from './rope.js';
export * from './sampling.js';
export * from './tokenizer.js';
export * from './train.js';
export * from './weights.js';
