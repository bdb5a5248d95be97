/**
 * Turns the committed raw results (results/runN/results.json + scores.json) into the Table-4-style
 * markdown table printed on stdout (pasted into docs/experiments.md) and the Figure-2-style plot
 * docs/e2e-metric-vs-params.svg (test loss and ROUGE-L against trainable parameters, log x).
 *
 *   node --conditions=source --import tsx experiments/e2e/report.ts [results/run2]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Result {
  name: string;
  label: string;
  method: string;
  r?: number;
  targets?: string;
  trainableParams: number;
  checkpointBytes: number;
  peakBytes: number | null;
  testLoss: number;
  train?: { steps: number; msPerStep: number };
}
interface Scores {
  scores: Record<string, { bleu: number; rougeL: number }>;
}

const here = (p: string): string => new URL(p, import.meta.url).pathname;
const dir = here(`./${process.argv[2] ?? 'results/run2'}/`);
const results = (JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { results: Result[] })
  .results;
const scores = (JSON.parse(readFileSync(join(dir, 'scores.json'), 'utf8')) as Scores).scores;

const fmtInt = (n: number): string => n.toLocaleString('en-US');
const fmtBytes = (b: number): string =>
  b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`;
const full = results.find((r) => r.name === 'full');
const rows = results.map((r) => {
  const s = scores[r.name];
  const ckpt = r.checkpointBytes
    ? `${fmtBytes(r.checkpointBytes)}${full && r.name !== 'full' ? ` (${((100 * r.checkpointBytes) / full.checkpointBytes).toFixed(1)} %)` : ''}`
    : '–';
  return `| ${r.label} | ${fmtInt(r.trainableParams)} | ${r.peakBytes ? `${(r.peakBytes / 2 ** 30).toFixed(2)} GiB` : '–'} | ${r.train ? r.train.msPerStep.toFixed(0) : '–'} | ${r.testLoss.toFixed(3)} | ${s ? s.bleu.toFixed(2) : '–'} | ${s ? s.rougeL.toFixed(1) : '–'} | ${ckpt} |`;
});
console.log(
  [
    '| method | trainable params | peak GPU memory | ms / step | test loss ↓ | BLEU | ROUGE-L | checkpoint |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n'),
);

// ---- the plot: two panels, log-x ------------------------------------------------------------------
interface Pt {
  x: number;
  y: number;
}
interface Series {
  name: string;
  color: string;
  line: boolean;
  points: Pt[];
}
function series(metric: (r: Result) => number): Series[] {
  const pick = (f: (r: Result) => boolean): Pt[] =>
    results.filter(f).map((r) => ({ x: r.trainableParams, y: metric(r) }));
  return [
    { name: 'LoRA W_q, W_v', color: '#1f77b4', line: true, points: pick((r) => r.targets === 'qv') },
    {
      name: 'LoRA W_q, W_k, W_v, W_o',
      color: '#d62728',
      line: true,
      points: pick((r) => r.targets === 'qkvo'),
    },
    { name: 'BitFit', color: '#2ca02c', line: false, points: pick((r) => r.method === 'bitfit') },
    { name: 'FT', color: '#000000', line: false, points: pick((r) => r.method === 'full') },
  ];
}
function panel(ox: number, title: string, yLabel: string, data: Series[], baseline?: number): string {
  const W = 420;
  const H = 320;
  const m = { l: 56, r: 12, t: 28, b: 44 };
  const xs = data.flatMap((s) => s.points.map((p) => p.x));
  const ys = data.flatMap((s) => s.points.map((p) => p.y)).concat(baseline === undefined ? [] : [baseline]);
  const lx0 = Math.floor(Math.log10(Math.min(...xs)));
  const lx1 = Math.ceil(Math.log10(Math.max(...xs)));
  const pad = (Math.max(...ys) - Math.min(...ys)) * 0.08 || 1;
  const y0 = Math.min(...ys) - pad;
  const y1 = Math.max(...ys) + pad;
  const sx = (x: number): number => ox + m.l + ((Math.log10(x) - lx0) / (lx1 - lx0)) * (W - m.l - m.r);
  const sy = (y: number): number => m.t + (1 - (y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const f = (v: number): string => v.toFixed(1);
  const out: string[] = [
    `<text x="${f(ox + W / 2)}" y="18" text-anchor="middle" font-size="13">${title}</text>`,
    `<line x1="${ox + m.l}" y1="${H - m.b}" x2="${ox + W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${ox + m.l}" y1="${m.t}" x2="${ox + m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${f(ox + W / 2)}" y="${H - 8}" text-anchor="middle">trainable parameters (log scale)</text>`,
    `<text transform="translate(${ox + 14},${f((m.t + H - m.b) / 2)}) rotate(-90)" text-anchor="middle">${yLabel}</text>`,
  ];
  for (let e = lx0; e <= lx1; e++) {
    out.push(
      `<line x1="${f(sx(10 ** e))}" y1="${m.t}" x2="${f(sx(10 ** e))}" y2="${H - m.b}" stroke="#eee"/>`,
      `<text x="${f(sx(10 ** e))}" y="${H - m.b + 16}" text-anchor="middle">10${e === 0 ? '⁰' : `<tspan dy="-5" font-size="9">${e}</tspan>`}</text>`,
    );
  }
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    out.push(
      `<line x1="${ox + m.l - 4}" y1="${f(sy(y))}" x2="${ox + m.l}" y2="${f(sy(y))}" stroke="black"/>`,
      `<text x="${ox + m.l - 6}" y="${f(sy(y) + 4)}" text-anchor="end">${y.toFixed(2)}</text>`,
    );
  }
  if (baseline !== undefined) {
    out.push(
      `<line x1="${ox + m.l}" y1="${f(sy(baseline))}" x2="${ox + W - m.r}" y2="${f(sy(baseline))}" stroke="#999" stroke-dasharray="4 3"/>`,
      `<text x="${ox + W - m.r - 4}" y="${f(sy(baseline) - 4)}" text-anchor="end" fill="#666">base model, not fine-tuned</text>`,
    );
  }
  for (const s of data) {
    if (s.line && s.points.length > 1) {
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${s.points.map((p) => `${f(sx(p.x))},${f(sy(p.y))}`).join(' ')}"/>`,
      );
    }
    for (const p of s.points) {
      out.push(
        s.line
          ? `<circle cx="${f(sx(p.x))}" cy="${f(sy(p.y))}" r="3.5" fill="${s.color}"/>`
          : `<rect x="${f(sx(p.x) - 4)}" y="${f(sy(p.y) - 4)}" width="8" height="8" fill="${s.color}"/>`,
      );
    }
  }
  return out.join('\n');
}
const base = results.find((r) => r.method === 'none');
const lossSeries = series((r) => r.testLoss);
const rougeSeries = series((r) => scores[r.name]?.rougeL ?? Number.NaN);
const legend = lossSeries
  .map(
    (s, i) =>
      `<g transform="translate(${70 + i * 200},342)">${s.line ? `<circle cx="0" cy="-4" r="4" fill="${s.color}"/>` : `<rect x="-4" y="-8" width="8" height="8" fill="${s.color}"/>`}<text x="9" y="0">${s.name}</text></g>`,
  )
  .join('\n');
const svg = [
  '<svg xmlns="http://www.w3.org/2000/svg" width="860" height="356" viewBox="0 0 860 356" font-family="sans-serif" font-size="11">',
  '<title>E2E: test loss and BLEU vs trainable parameters</title>',
  '<rect width="860" height="356" fill="white"/>',
  panel(0, 'E2E test loss (nats/char, lower is better)', 'test loss', lossSeries, base?.testLoss),
  panel(
    430,
    'E2E ROUGE-L (higher is better)',
    'ROUGE-L',
    rougeSeries,
    base ? scores[base.name]?.rougeL : undefined,
  ),
  legend,
  '</svg>',
  '',
].join('\n');
writeFileSync(here('../../docs/e2e-metric-vs-params.svg'), svg);
console.error('wrote docs/e2e-metric-vs-params.svg');
