import type { WebGPUContext } from './context.js';

let current: WebGPUContext | null = null;

export function setContext(c: WebGPUContext | null): void {
  current = c;
}

export function currentContext(): WebGPUContext | null {
  return current;
}
