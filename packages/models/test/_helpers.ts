import { noGrad } from '@lowrank/autograd';

export { memory, tensor, tidy } from '@lowrank/tensor';
/** Runs fn without recording gradients (tests). */
export function noGradTest<T>(fn: () => T): T {
  return noGrad(fn);
}
