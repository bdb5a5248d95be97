import type { SuiteContext } from './index.js';
export function matmulSuite(_ctx: SuiteContext): void {}
