import type { RuleTable } from '../rule.js';
import { attentionRules } from './attention.js';
import { combineRules } from './combine.js';
import { elementwiseRules } from './elementwise.js';
import { indexingRules } from './indexing.js';
import { loraRules } from './lora.js';
import { lossRules } from './loss.js';
import { matmulRules } from './matmul.js';
import { normRules } from './norm.js';
import { quantRules } from './quant.js';
import { reduceRules } from './reduce.js';
import { rotaryRules } from './rotary.js';
import { swigluRules } from './swiglu.js';
import { viewRules } from './views.js';

/** Every gradient rule, by op name (a test checks each op of OpAttrs has one or is non-differentiable). */
export const RULES: RuleTable = {
  ...elementwiseRules,
  ...reduceRules,
  ...matmulRules,
  ...loraRules,
  ...viewRules,
  ...indexingRules,
  ...combineRules,
  ...normRules,
  ...swigluRules,
  ...rotaryRules,
  ...lossRules,
  ...attentionRules,
  ...quantRules,
};
