import { describe, expect, it } from 'vitest';
import { MATMUL_CONFIGS, planMatmul } from '../src/backends/webgpu/matmul.js';

/**
 * The WebGPU matmul heuristic's plans for the shapes its H200 sweeps measured
 * (bench/matmul-sweep.ts; results under bench/results/): which tile and how many K splits.
 */
const h200 = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
} as GPUSupportedLimits;
const name = (c: object) => Object.entries(MATMUL_CONFIGS).find(([, v]) => v === c)?.[0];
const plan = (m: number, k: number, n: number) => {
  const p = planMatmul(h200, 1, m, k, n);
  return `${name(p.config)}/${p.splitK}`;
};

describe('matmul plans (H200 limits)', () => {
  it("GPT-2's products keep 64×128 tiles (multiples of 128 pad neither shape)", () => {
    expect(plan(4096, 768, 2304)).toBe('t64x128x16r8/1'); // c_attn forward
    expect(plan(4096, 768, 768)).toBe('t64x128x16r8/1'); // attn proj
    expect(plan(4096, 3072, 768)).toBe('t64x128x16r8/1'); // mlp proj: 384 tiles, no split
    expect(plan(768, 4096, 768)).toBe('t64x128x16r8/8'); // dW: 72 tiles, split-K
    expect(plan(1024, 50257, 768)).toBe('t64x128x16r8/8'); // the LM head's dh, one chunk
  });

  it("SmolLM2's 576-wide products take 128×64 tiles (9 × 64, no padding), split on few tiles", () => {
    // q / o: 24.6 TFLOP/s at 3 splits, 22.3 unsplit, 17.1 on 64×128 tiles
    expect(plan(4096, 576, 576)).toBe('t128x64x16r8/3');
    expect(plan(4096, 576, 192)).toBe('t128x64x16r8/3'); // k / v: 96 tiles
    expect(plan(4096, 192, 576)).toBe('t128x64x16r8/1'); // d(input) of k / v: one split's depth
    expect(plan(4096, 1536, 576)).toBe('t128x64x16r8/4'); // down: 28.8 at 4 splits, 15.9 before
    expect(plan(1024, 49152, 576)).toBe('t128x64x16r8/8'); // LM head dh: 29.2 vs 22.6
    expect(plan(4096, 576, 1536)).toBe('t64x128x16r8/1'); // up / gate: 1536 = 12 × 128
  });
});
