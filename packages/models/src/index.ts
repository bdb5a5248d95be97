/**
 * @lowrank/models — GPT-2 (Hugging Face compatible), an encoder classifier, tokenizers, data
 * helpers and generation.
 */
export * from './config.js';
export * from './data.js';
export * from './plot.js';
export * from './sampling.js';
export * from './tokenizer.js';
