/**
 * The tensor-op property suite (packages/tensor/test/suite), run in the page on the backend the
 * page got (WebGPU through navigator.gpu here): a subset of its blocks, few fast-check runs each.
 * `?grep=regex` picks tests by full name, `?runs=N` sets the runs per property, `?seed=N` fast-check's
 * seed (fixed by default, so that a run in CI is reproducible).
 */
import * as lr from '@lowrank/tensor';
import fc from 'fast-check';
import { opSuite, type Tolerances } from '../../../../packages/tensor/test/suite/index.js';
import { runRegistered, type TestResult } from './vitest-shim.js';

/** As packages/tensor/test/webgpu/suite.test.ts runs the suite on Dawn in Node. */
export const WEBGPU_TOLERANCES: Tolerances = {
  exact: { rtol: 0, atol: 0 },
  elementwise: { rtol: 2e-5, atol: 2e-6 },
  gelu: { rtol: 1e-5, atol: 2e-6 },
  reduce: { rtol: 2e-5, atol: 2e-5 },
  matmul: { rtol: 2e-5, atol: 2e-5 },
};

/** Blocks of the suite that run by default (the memory block is left to the Node runs). */
export const DEFAULT_GREP = '> (elementwise|reductions|matmul|views) > ';

/** Tests left out of the default run, each with the reason (shown on the page). */
export const EXCLUDED: readonly { test: RegExp; reason: string }[] = [
  {
    test: /> elementwise > (sin|cos) matches/,
    reason:
      'WGSL allows sin/cos an absolute error of 2^-11 on [-π, π]; SwiftShader uses it (sin(-1.875) misses the elementwise tolerance)',
  },
  {
    test: /> reductions > softmax sums to 1/,
    reason:
      'logsumexp of a row of −∞ gives −88.03 on SwiftShader, not −∞ (its log(0) is finite; WGSL does not require IEEE infinities)',
  },
];

export interface SuiteReport {
  device: string;
  backend: string;
  results: TestResult[];
  /** Tests left out, with why. */
  skipped: string[];
}

async function main(): Promise<void> {
  const params = new URLSearchParams(window.location.search);
  const grep = new RegExp(params.get('grep') ?? DEFAULT_GREP);
  const excluded = params.has('grep') ? [] : EXCLUDED;
  const runs = Number(params.get('runs') ?? 4);
  const seed = Number(params.get('seed') ?? 1);
  fc.configureGlobal({ seed });
  const out = document.getElementById('results')!;
  const summary = document.getElementById('summary')!;
  try {
    const { device, description } = await lr.init({
      backend: (params.get('backend') ?? 'auto') as lr.Device,
    });
    document.getElementById('backend')!.textContent = description;
    opSuite(device, WEBGPU_TOLERANCES, { numRuns: runs });
    for (const x of excluded) out.textContent += `- skipped ${x.test.source}: ${x.reason}\n`;
    const results = await runRegistered(
      (name) => grep.test(name) && !excluded.some((x) => x.test.test(name)),
      (r) => {
        out.textContent += `${r.ok ? '✓' : '✗'} ${r.name} (${r.ms.toFixed(0)} ms)${r.error ? `\n    ${r.error}` : ''}\n`;
      },
    );
    const failed = results.filter((r) => !r.ok).length;
    summary.textContent = `${results.length - failed} passed, ${failed} failed (${runs} runs per property, seed ${seed})`;
    const report: SuiteReport = {
      device,
      backend: description,
      results,
      skipped: excluded.map((x) => `${x.test.source}: ${x.reason}`),
    };
    (window as unknown as { suiteReport: SuiteReport }).suiteReport = report;
    document.body.dataset.state = 'done';
  } catch (e) {
    summary.textContent = `error: ${(e as Error).message}`;
    document.body.dataset.state = 'error';
    throw e;
  }
}

void main();
