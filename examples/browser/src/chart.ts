/** A live loss chart on a canvas: one polyline per training run, the current one drawn last. */

export interface ChartSeries {
  label: string;
  color: string;
  points: [number, number][];
}

const PAD = { left: 44, right: 12, top: 12, bottom: 34 };

function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toPrecision(6)));
  return out;
}

export function drawLossChart(canvas: HTMLCanvasElement, series: readonly ChartSeries[]): void {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600;
  const h = canvas.clientHeight || 220;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    ctx.fillStyle = '#888';
    ctx.fillText('the training loss appears here, step by step', PAD.left, h / 2);
    return;
  }
  const xMax = Math.max(2, ...all.map((p) => p[0]));
  let yMin = Math.min(...all.map((p) => p[1]));
  let yMax = Math.max(...all.map((p) => p[1]));
  const margin = (yMax - yMin) * 0.08 || 0.1;
  yMin -= margin;
  yMax += margin;
  const x = (v: number): number => PAD.left + ((v - 1) / (xMax - 1)) * (w - PAD.left - PAD.right);
  const y = (v: number): number => PAD.top + (1 - (v - yMin) / (yMax - yMin)) * (h - PAD.top - PAD.bottom);

  ctx.strokeStyle = '#e3e3e3';
  ctx.fillStyle = '#666';
  ctx.lineWidth = 1;
  for (const t of niceTicks(yMin, yMax, 4)) {
    ctx.beginPath();
    ctx.moveTo(PAD.left, y(t));
    ctx.lineTo(w - PAD.right, y(t));
    ctx.stroke();
    ctx.fillText(t.toFixed(2), 4, y(t) + 4);
  }
  for (const t of niceTicks(1, xMax, 6)) {
    if (t < 1) continue;
    ctx.fillText(String(t), x(t) - 3, h - 20);
  }
  ctx.fillText('step', (PAD.left + w - PAD.right) / 2 - 10, h - 4);

  let legendX = PAD.left + 8;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([sx, sy], i) => {
      if (i === 0) ctx.moveTo(x(sx), y(sy));
      else ctx.lineTo(x(sx), y(sy));
    });
    ctx.stroke();
    ctx.fillStyle = s.color;
    ctx.fillRect(legendX, PAD.top + 2, 10, 3);
    ctx.fillText(s.label, legendX + 14, PAD.top + 8);
    legendX += ctx.measureText(s.label).width + 30;
  }
}
