// TEMPORARY: until @lowrank/nn exports its modules from its index.

export { ModuleList } from '../../nn/src/containers.js';
export { Conv1D } from '../../nn/src/conv1d.js';
export * as init from '../../nn/src/init.js';
export { Dropout, Embedding, LayerNorm, Linear } from '../../nn/src/layers.js';
export { crossEntropy } from '../../nn/src/losses.js';
export { type HostTensor, Module } from '../../nn/src/module.js';
export {
  AdamW,
  clipGradNorm,
  LambdaLR,
  type OptimizerStateDict,
  warmupCosineLambda,
} from '../../nn/src/optim/index.js';
export {
  parseSafetensors,
  serializeSafetensors,
  stateDictToSafetensors,
  toHost,
} from '../../nn/src/safetensors.js';
