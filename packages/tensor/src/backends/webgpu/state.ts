import { OpError } from '../../errors.js';
import type { WebGPUContext } from './context.js';

let current: WebGPUContext | null = null;

export function setContext(c: WebGPUContext | null): void {
  current = c;
}

/** The live WebGPU context (throws naming the op when the backend is not initialised). */
export function ctx(op: string): WebGPUContext {
  if (!current)
    throw new OpError(op, "the WebGPU backend is not initialised: call `await init({ backend: 'webgpu' })`");
  return current;
}

export function currentContext(): WebGPUContext | null {
  return current;
}
