/**
 * Splits [0, total) into `parts` contiguous ranges, each starting at a multiple of `unit`: how
 * the Wasm kernels hand rows or elements to threads (whole rows each, so results never depend
 * on the thread count).
 *
 * @example
 * ranges(10, 3); // [[0, 3], [3, 7], [7, 10]]
 * ranges(10, 2, 4); // [[0, 4], [4, 10]]
 */
export function ranges(total: number, parts: number, unit = 1): [number, number][] {
  const out: [number, number][] = [];
  for (let t = 0; t < parts; t++) {
    const a = Math.min(total, unit * Math.round((t * total) / parts / unit));
    const b = t === parts - 1 ? total : Math.min(total, unit * Math.round(((t + 1) * total) / parts / unit));
    if (b > a) out.push([a, b]);
  }
  return out;
}
