import type { SuiteContext } from './index.js';
export function indexingSuite(_ctx: SuiteContext): void {}
