import type { SuiteContext } from './index.js';
export function memorySuite(_ctx: SuiteContext): void {}
