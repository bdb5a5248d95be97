/** A named series of (x, y) points for `lineChartSvg`. */
export interface Series {
  /** Legend label. */
  name: string;
  /** The (x, y) points, in drawing order. */
  points: readonly (readonly [number, number])[];
  /** CSS color (default: a palette by position). */
  color?: string;
  /**
   * Draw each point as a dot joined by a dashed line (for sparse measurements such as periodic
   * evaluations, which a plain line would pass off as a measured curve between them).
   */
  markers?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];

/**
 * A self-contained SVG line chart (axes, ticks, legend): enough for loss curves, no dependency.
 * Non-finite points are skipped.
 *
 * @example
 * const svg = lineChartSvg([{ name: 'train loss', points: trainer.losses }], { title: 'LoRA', xLabel: 'step' });
 */
export function lineChartSvg(
  series: readonly Series[],
  options: { title?: string; xLabel?: string; yLabel?: string; width?: number; height?: number } = {},
): string {
  const width = options.width ?? 640;
  const height = options.height ?? 400;
  const m = { left: 64, right: 20, top: 36, bottom: 48 };
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (pts.length === 0) throw new Error('lineChartSvg: no finite points to plot');
  let [x0, x1] = extent(pts.map((p) => p[0]));
  let [y0, y1] = extent(pts.map((p) => p[1]));
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number): number => m.left + ((x - x0) / (x1 - x0)) * (width - m.left - m.right);
  const sy = (y: number): number => height - m.bottom - ((y - y0) / (y1 - y0)) * (height - m.top - m.bottom);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (options.title)
    out.push(
      `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${esc(options.title)}</text>`,
    );
  for (const t of ticks(x0, x1, 6)) {
    out.push(
      `<line x1="${f(sx(t))}" y1="${height - m.bottom}" x2="${f(sx(t))}" y2="${height - m.bottom + 5}" stroke="black"/>`,
      `<text x="${f(sx(t))}" y="${height - m.bottom + 18}" text-anchor="middle">${fmtTick(t)}</text>`,
    );
  }
  for (const t of ticks(y0, y1, 6)) {
    out.push(
      `<line x1="${m.left}" y1="${f(sy(t))}" x2="${width - m.right}" y2="${f(sy(t))}" stroke="#ddd"/>`,
      `<text x="${m.left - 8}" y="${f(sy(t) + 4)}" text-anchor="end">${fmtTick(t)}</text>`,
    );
  }
  out.push(
    `<line x1="${m.left}" y1="${height - m.bottom}" x2="${width - m.right}" y2="${height - m.bottom}" stroke="black"/>`,
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${height - m.bottom}" stroke="black"/>`,
  );
  if (options.xLabel)
    out.push(`<text x="${width / 2}" y="${height - 10}" text-anchor="middle">${esc(options.xLabel)}</text>`);
  if (options.yLabel) {
    out.push(
      `<text x="16" y="${height / 2}" text-anchor="middle" transform="rotate(-90 16 ${height / 2})">${esc(options.yLabel)}</text>`,
    );
  }
  series.forEach((s, i) => {
    const color = s.color ?? COLORS[i % COLORS.length];
    const d = s.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
      .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${f(sx(x))},${f(sy(y))}`)
      .join(' ');
    const dash = s.markers ? ' stroke-dasharray="4 3"' : '';
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"${dash}/>`);
    if (s.markers) {
      for (const [x, y] of s.points) {
        if (Number.isFinite(x) && Number.isFinite(y))
          out.push(`<circle cx="${f(sx(x))}" cy="${f(sy(y))}" r="3.5" fill="${color}"/>`);
      }
    }
    const ly = m.top + 4 + i * 16;
    out.push(
      `<line x1="${width - m.right - 150}" y1="${ly}" x2="${width - m.right - 130}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${width - m.right - 124}" y="${ly + 4}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function extent(v: number[]): [number, number] {
  return [Math.min(...v), Math.max(...v)];
}

/**
 * About `count` round tick values covering [lo, hi].
 *
 * @example
 * ticks(0, 1, 5); // [0, 0.2, 0.4, 0.6, 0.8, 1]
 */
export function ticks(lo: number, hi: number, count: number): number[] {
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((s) => s * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    out.push(Number(t.toPrecision(12)));
  return out;
}

function fmtTick(t: number): string {
  return Math.abs(t) >= 1e4 || (Math.abs(t) < 1e-3 && t !== 0)
    ? t.toExponential(1)
    : String(Number(t.toPrecision(4)));
}
function f(v: number): string {
  return v.toFixed(1);
}
function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
