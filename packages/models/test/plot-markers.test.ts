import { describe, expect, it } from 'vitest';
import { lineChartSvg } from '../src/plot.js';

describe('lineChartSvg markers', () => {
  it('draws a dot at every finite point of a markers series, and a dashed line between them', () => {
    const svg = lineChartSvg(
      [
        { name: 'train', points: [0, 1, 2, 3, 4].map((s) => [s, 3 - 0.5 * s] as const) },
        {
          name: 'eval',
          points: [
            [0, 3],
            [2, Number.NaN],
            [4, 1],
          ],
          markers: true,
        },
      ],
      { width: 200, height: 100 },
    );
    const circles = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [
      Number(m[1]),
      Number(m[2]),
    ]);
    // x 0 → the left margin (64), x 4 → width − right margin (180); y spans [1, 3] padded by 5%
    expect(circles).toHaveLength(2);
    expect(circles[0][0]).toBeCloseTo(64, 1);
    expect(circles[1][0]).toBeCloseTo(180, 1);
    const plotTop = 36;
    const plotBottom = 100 - 48;
    const sy = (y: number) => plotBottom - ((y - 0.9) / 2.2) * (plotBottom - plotTop);
    expect(circles[0][1]).toBeCloseTo(sy(3), 0);
    expect(circles[1][1]).toBeCloseTo(sy(1), 0);
    expect(svg.match(/stroke-dasharray/g)).toHaveLength(1); // only the markers series
  });
});
