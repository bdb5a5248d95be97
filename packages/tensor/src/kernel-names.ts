import type { KernelName } from './backend.js';

/** Every kernel a complete backend registers (tests check each backend against this list). */
export const KERNEL_NAMES: readonly KernelName[] = [
  'elementwise',
  'reduce',
  'softmax',
  'crossEntropyRows',
  'norm',
  'normBackward',
  'normParamGrad',
  'matmul',
  'loraMatmul',
  'matmulEpilogue',
  'attention',
  'attentionBackward',
  'gather',
  'indexSelect',
  'scatterAdd',
  'indexAdd',
  'adamUpdate',
  'quantMatmul',
  'dequantize',
  'quantize',
];
