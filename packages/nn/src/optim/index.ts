/** Optimizers, gradient clipping and learning-rate schedules (PyTorch's `torch.optim`). */
export { Adam, type AdamOptions, AdamW } from './adam.js';
export { clipGradNorm } from './clip.js';
export {
  constantLambda,
  constantSchedule,
  cosineSchedule,
  type DecayOptions,
  LambdaLR,
  type LrLambda,
  linearSchedule,
  type SchedulerStateDict,
  type WarmupOptions,
  warmupCosineLambda,
  warmupLinearLambda,
} from './lr-scheduler.js';
export {
  type BaseOptions,
  Optimizer,
  type OptimizerStateDict,
  type OptionValue,
  type ParamGroup,
  type ParamState,
  type ParamsSpec,
} from './optimizer.js';
export { SGD, type SGDOptions } from './sgd.js';
