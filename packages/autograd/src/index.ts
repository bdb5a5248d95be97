/**
 * @lowrank/autograd — reverse-mode differentiation of every tensor op. Importing this package
 * installs the recorder into @lowrank/tensor (`setAutogradHooks`); from then on ops on tensors
 * that require grad build a graph, and `t.backward()` fills the leaves' `.grad`.
 *
 * @module @lowrank/autograd
 */
import { setAutogradHooks } from '@lowrank/tensor';
import { backward } from './backward.js';
import { isGradEnabled, noGrad } from './mode.js';
import { onDispose, recordOp } from './node.js';

setAutogradHooks({ recordOp, backward, isGradEnabled, noGrad, onDispose });

export type { BackwardOptions } from './backward.js';
export { type GradOptions, grad, type ValueAndGrad, valueAndGrad, zeroGrad } from './functional.js';
export {
  type GradcheckMismatch,
  type GradcheckOptions,
  type GradcheckResult,
  gradcheck,
} from './gradcheck.js';
export { type GraphOptions, graph } from './graph.js';
export { enableGrad, isGradEnabled, noGrad, noGradAsync } from './mode.js';
export {
  type BackwardContext,
  type GradRule,
  type RuleTable,
  registerGradRule,
  unbroadcast,
} from './rule.js';
export { RULES as GRAD_RULES } from './rules/index.js';
