/**
 * The `nn` namespace: modules, layers, initialisers (`nn.init`) and functional forms
 * (`nn.functional`, also exported as `F`), laid out like `torch.nn`.
 */
export {
  CausalSelfAttention,
  type CausalSelfAttentionOptions,
  MultiheadAttention,
  type MultiheadAttentionForwardOptions,
  type MultiheadAttentionOptions,
} from './attention.js';
export { ModuleDict, ModuleList, Sequential } from './containers.js';
export { Conv1D } from './conv1d.js';
export * as functional from './functional.js';
export * as init from './init.js';
export {
  type Activation,
  activation,
  Dropout,
  Embedding,
  GELU,
  Identity,
  LayerNorm,
  type LayerOptions,
  Linear,
  MLP,
  type MLPOptions,
  ReLU,
  RMSNorm,
  Sigmoid,
  SiLU,
  Softmax,
  Tanh,
} from './layers.js';
export {
  type HostTensor,
  type LoadStateDictOptions,
  type LoadStateDictResult,
  Module,
  Parameter,
  type StateDict,
  type StateDictSource,
  type UnaryModule,
} from './module.js';
