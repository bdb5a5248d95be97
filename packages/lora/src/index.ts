/**
 * @lowrank/lora — low-rank adaptation (Hu et al., 2021) compatible with Hugging Face PEFT:
 * configs with PEFT's names, LoRA Linear / Conv1D / Embedding / fused-projection layers,
 * merging, several adapters, mixed-adapter batches, PEFT adapter files and the paper's §7
 * analyses. File-system helpers are in `@lowrank/lora/node`.
 *
 * @module @lowrank/lora
 */
export * from './adapter-io.js';
export {
  type Amplification,
  amplificationFactor,
  rightSingularVectors,
  subspaceSimilarity,
  subspaceSimilarityGrid,
  toMatrix,
} from './analysis/subspace.js';
/** Host float64 matrix helpers used by the analyses (`linalg.matmul`, `linalg.transpose`, …). */
export * as linalg from './analysis/svd.js';
export { frobeniusNorm, leadingColumns, type Matrix, matrix, type SVDResult, svd } from './analysis/svd.js';
export {
  type LoraBias,
  type LoraConfig,
  LoraConfigError,
  patternMatches,
  type ResolvedLoraConfig,
  resolveConfig,
  type TargetModules,
} from './config.js';
export { type AdapterSpec, LoraLayer, type PlainFactors } from './layers/base.js';
export { LoraEmbedding } from './layers/embedding.js';
export { LoraFusedLinear } from './layers/fused.js';
export { LoraLinear } from './layers/linear.js';
export {
  applyLora,
  BASE_ADAPTER,
  getLoraModel,
  LoraModel,
  type MixedOptions,
  type TrainableReport,
  trainableParameters,
} from './model.js';
export { fromPeftConfig, type ParsedPeftConfig, type PeftConfigJson, toPeftConfig } from './peft-config.js';
export { type Footprint, trainingFootprint } from './report.js';
