import { readFileSync } from 'node:fs';
import { Generator } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { configToJSON, GPT2_SMALL, gpt2Config, innerDim } from '../src/config.js';
import { e2eStream, e2eText, groupByMr, parseE2E, randomWindows, trainValSplit } from '../src/data.js';
import { lineChartSvg, ticks } from '../src/plot.js';

describe('gpt2Config', () => {
  it('reads the fixture config.json as HF wrote it', () => {
    const raw = JSON.parse(
      readFileSync(new URL('./fixtures/peft-gpt2-tiny/base/config.json', import.meta.url), 'utf8'),
    );
    const c = gpt2Config(raw);
    expect([c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head]).toEqual([256, 64, 32, 2, 2]);
    expect(innerDim(c)).toBe(128);
    expect(c.activation_function).toBe('gelu_new');
    expect(gpt2Config(configToJSON(c))).toEqual(c);
  });
  it('defaults to GPT-2 small and rejects bad values by name', () => {
    expect(gpt2Config()).toEqual(GPT2_SMALL);
    expect(() => gpt2Config({ n_embd: 30, n_head: 4 })).toThrow(/divisible by n_head/);
    expect(() => gpt2Config({ n_layer: 0 })).toThrow(/'n_layer' must be a positive integer/);
    expect(() => gpt2Config({ activation_function: 'swish' })).toThrow(/activation_function/);
    expect(() => gpt2Config({ attn_pdrop: 1 })).toThrow(/attn_pdrop/);
  });
});

describe('E2E data', () => {
  const text = 'name : A | area : x||A is in x .\nname : A | area : x||In x , A .\n\nname : B||B .\n';
  it('parses, groups references and formats training text', () => {
    const ex = parseE2E(text);
    expect(ex).toHaveLength(3);
    expect(ex[0]).toEqual({ mr: 'name : A | area : x', ref: 'A is in x .' });
    expect(groupByMr(ex)).toEqual([
      { mr: 'name : A | area : x', refs: ['A is in x .', 'In x , A .'] },
      { mr: 'name : B', refs: ['B .'] },
    ]);
    expect(e2eText(ex[2])).toBe('name : B||B .\n');
    expect(() => parseE2E('ok||fine\nbroken line')).toThrow(/line 2 has no '\|\|'/);
  });
  it('the shipped files parse', () => {
    const valid = parseE2E(readFileSync(new URL('../../../data/e2e/valid.txt', import.meta.url), 'utf8'));
    expect(valid).toHaveLength(4672);
    expect(groupByMr(valid).length).toBeLessThan(1000);
  });
  it('e2eStream masks the meaning representation: the loss is on the reference only', () => {
    const enc = (t: string): number[] => Array.from(t, (c) => c.charCodeAt(0));
    const { tokens, targetMask } = e2eStream(parseE2E('ab||cd\ne||f\n'), enc);
    expect(String.fromCharCode(...tokens)).toBe('ab||cd\ne||f\n');
    expect(Array.from(targetMask).join('')).toBe('0000111' + '00011');
    const b = randomWindows(tokens, 1, tokens.length, new Generator(0), targetMask);
    expect(Array.from(b.labels)).toEqual(Array.from(tokens, (t, i) => (targetMask[i] ? t : -100)));
    expect(() => randomWindows(tokens, 1, 2, new Generator(0), targetMask.subarray(1))).toThrow(/mask has/);
  });

  it('a masked batch with no token to predict is drawn again (its mean loss would be NaN)', () => {
    // 200 tokens, only 150–159 kept: most 4-token windows keep nothing past their first token
    const stream = Int32Array.from({ length: 200 }, (_, i) => i);
    const mask = Uint8Array.from({ length: 200 }, (_, i) => (i >= 150 && i < 160 ? 1 : 0));
    for (let seed = 0; seed < 20; seed++) {
      const b = randomWindows(stream, 2, 4, new Generator(seed), mask);
      const predicted = Array.from(b.labels).filter((l, i) => l !== -100 && i % 4 !== 0);
      expect(predicted.length, `seed ${seed}`).toBeGreaterThan(0);
    }
    // a mask that keeps nothing cannot be satisfied: a clear error, not an endless loop
    expect(() => randomWindows(stream, 2, 4, new Generator(0), new Uint8Array(200))).toThrow(
      /100 random batches of 2 × 4 tokens held no masked-in token to predict.*\(0 of 200\)/,
    );
  });

  it('random windows are contiguous slices of the stream', () => {
    const stream = Int32Array.from({ length: 100 }, (_, i) => i);
    const b = randomWindows(stream, 4, 10, new Generator(0));
    for (let r = 0; r < 4; r++) {
      const w = b.ids.subarray(r * 10, r * 10 + 10);
      for (let t = 1; t < 10; t++) expect(w[t]).toBe(w[0] + t);
      expect(w[9]).toBeLessThan(100);
    }
    expect(() => randomWindows(stream, 1, 101, new Generator(0))).toThrow(/fewer than block/);
    const { train, val } = trainValSplit(stream, 0.1);
    expect([train.length, val.length, val[0]]).toEqual([90, 10, 90]);
  });
});

describe('lineChartSvg', () => {
  it('draws one path per series with the points in order', () => {
    const svg = lineChartSvg(
      [
        {
          name: 'train',
          points: [
            [0, 4],
            [1, 3],
            [2, 2.5],
          ],
        },
        {
          name: 'val <1>',
          points: [
            [0, 4.2],
            [2, 2.9],
          ],
        },
      ],
      { title: 'loss', xLabel: 'step', yLabel: 'loss' },
    );
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain('val &lt;1&gt;');
    const d = /<path d="([^"]+)"/.exec(svg)![1].split(' ');
    expect(d).toHaveLength(3);
    expect(() => lineChartSvg([{ name: 'x', points: [[0, Number.NaN]] }])).toThrow(/no finite points/);
  });
  it('ticks are round and cover the range', () => {
    expect(ticks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(ticks(2.31, 2.79, 5)).toEqual([2.4, 2.5, 2.6, 2.7]);
  });
});
