import { Generator } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { checkSamplingOptions, sampleToken } from '../src/sampling.js';

/** Empirical frequencies of sampleToken over n draws. */
function freqs(logits: number[], o: Parameters<typeof sampleToken>[1], n = 20000): number[] {
  const g = new Generator(7);
  const c = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) c[sampleToken(logits, o, g)]++;
  return c.map((v) => v / n);
}
const softmax = (l: number[], t = 1): number[] => {
  const m = Math.max(...l);
  const e = l.map((v) => Math.exp((v - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

describe('sampleToken', () => {
  const logits = [1, 3, 0.5, 2.5, -1];
  it('greedy and temperature 0 take the argmax', () => {
    const g = new Generator(0);
    expect(sampleToken(logits, { greedy: true }, g)).toBe(1);
    expect(sampleToken(logits, { temperature: 0 }, g)).toBe(1);
    expect(sampleToken([0, 5, 5], { greedy: true }, g)).toBe(1);
  });
  it('plain sampling follows softmax(logits / T)', () => {
    for (const t of [1, 0.5, 2]) {
      const f = freqs(logits, { temperature: t });
      for (const [i, p] of softmax(logits, t).entries()) expect(f[i]).toBeCloseTo(p, 1.5);
    }
  });
  it('top-k keeps only the k best', () => {
    const f = freqs(logits, { topK: 2 });
    const p = softmax([3, 2.5]);
    expect(f[1]).toBeCloseTo(p[0], 1.5);
    expect(f[3]).toBeCloseTo(p[1], 1.5);
    expect(f[0] + f[2] + f[4]).toBe(0);
  });
  it('top-p keeps the smallest nucleus reaching p', () => {
    const p = softmax(logits); // sorted: 1 (0.49), 3 (0.30), 0 (0.07)...
    const f = freqs(logits, { topP: p[1] + 0.01 }); // needs tokens 1 and 3
    expect(f[0] + f[2] + f[4]).toBe(0);
    expect(f[1]).toBeCloseTo(p[1] / (p[1] + p[3]), 1.5);
    expect(freqs(logits, { topP: 0.01 }, 200)[1]).toBe(1);
  });
  it('is reproducible with a seed', () => {
    const draw = (seed: number): number[] => {
      const g = new Generator(seed);
      return Array.from({ length: 20 }, () => sampleToken(logits, {}, g));
    };
    expect(draw(3)).toEqual(draw(3));
    expect(draw(3)).not.toEqual(draw(4));
  });
  it('rejects bad options by name', () => {
    expect(() => checkSamplingOptions({ temperature: -1 })).toThrow(/temperature/);
    expect(() => checkSamplingOptions({ topK: 1.5 })).toThrow(/topK/);
    expect(() => checkSamplingOptions({ topP: 0 })).toThrow(/topP/);
  });
});
