import type { SuiteContext } from './index.js';
export function reduceSuite(_ctx: SuiteContext): void {}
