/**
 * @lowrank/nn — modules, layers, losses, optimizers, schedules and safetensors checkpoints.
 *
 * Namespaces follow PyTorch: `nn` (layers, `nn.init`, `nn.functional`), `F` (= nn.functional),
 * `optim` (optimizers, `clipGradNorm`, schedules). The classes are also exported by name.
 * Node file helpers (`saveSafetensors`, `saveCheckpoint`, …) live in `@lowrank/nn/node`.
 *
 * @example
 * import { nn, optim, F } from '@lowrank/nn';
 * const model = new nn.Sequential(new nn.Linear(2, 32), new nn.GELU(), new nn.Linear(32, 2));
 * const opt = new optim.AdamW(model.parameters(), { lr: 1e-2 });
 * const loss = F.crossEntropy(model.forward(x), y);
 * loss.backward(); opt.step(); opt.zeroGrad();
 *
 * @module @lowrank/nn
 */
import '@lowrank/autograd'; // installs the autograd hooks: backward() works for users of nn

export * from './attention.js';
export {
  checkpointFromBytes,
  checkpointToBytes,
  type JsonValue,
  type RestoredCheckpoint,
  type TrainingState,
} from './checkpoint.js';
export * from './containers.js';
export * from './conv1d.js';
export * as F from './functional.js';
export * as functional from './functional.js';
export * as initializers from './init.js';
export * from './layers.js';
export type { LossReduction } from './losses.js';
export * from './module.js';
export * as nn from './nn.js';
export * as optim from './optim/index.js';
export * from './optim/index.js';
export * from './quantized.js';
export * from './quantized-embedding.js';
export {
  decodeSafetensor,
  halfToFloat,
  MAX_HEADER_BYTES,
  type ParsedSafetensors,
  parseSafetensors,
  type RawSafetensorsTensor,
  type SafetensorsDType,
  SafetensorsError,
  type SafetensorsTensor,
  type SafetensorsTensorInfo,
  safetensorsEntries,
  safetensorsHeaderLength,
  safetensorsLayout,
  serializeSafetensors,
  stateDictToSafetensors,
  toHost,
} from './safetensors.js';
