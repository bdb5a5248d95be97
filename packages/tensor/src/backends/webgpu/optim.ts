import { sizeOf } from '../../shape.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { linearIndex, MAIN_ARGS, metaStruct, u, WG } from './wgsl.js';

// words: n, offsets of p, g, m, v, vmax; then the float scalars (bit patterns)
const SCALARS = ['decay', 'l2', 'beta1', 'beta2', 'c1', 'c2', 'stepSize', 'sqrtBc2', 'eps'] as const;
const WORDS = 6 + SCALARS.length;

function shader(amsgrad: boolean): string {
  const f = (name: (typeof SCALARS)[number]) => `bitcast<f32>(${u(6 + SCALARS.indexOf(name))})`;
  return `${metaStruct(WORDS)}
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
${amsgrad ? '@group(0) @binding(5) var<storage, read_write> h: array<f32>;' : ''}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex(WG)};
  if (i >= ${u(0)}) { return; }
  let pi = p[${u(1)} + i] * ${f('decay')};
  let gi = g[${u(2)} + i] + ${f('l2')} * pi;
  let mi = ${f('beta1')} * m[${u(3)} + i] + ${f('c1')} * gi;
  let vi = ${f('beta2')} * v[${u(4)} + i] + ${f('c2')} * gi * gi;
  m[${u(3)} + i] = mi;
  v[${u(4)} + i] = vi;
  ${
    amsgrad
      ? `let hi = max(h[${u(5)} + i], vi);
  h[${u(5)} + i] = hi;`
      : 'let hi = vi;'
  }
  p[${u(1)} + i] = pi - ${f('stepSize')} * mi / (sqrt(hi) / ${f('sqrtBc2')} + ${f('eps')});
}`;
}

/** Fused Adam/AdamW step: one dispatch per parameter, scalars in the uniform block. */
export const adamUpdate: GpuKernel<'adamUpdate'> = (c, param, grad, expAvg, expAvgSq, maxExpAvgSq, s) => {
  c.check('adamUpdate_');
  const n = sizeOf(param.shape);
  if (n === 0) return;
  const words = new Uint32Array(WORDS);
  words[0] = n;
  words[1] = param.offset;
  words[2] = grad.offset;
  words[3] = expAvg.offset;
  words[4] = expAvgSq.offset;
  words[5] = maxExpAvgSq ? maxExpAvgSq.offset : 0;
  const floats = new Float32Array(words.buffer);
  const values = { ...s, c1: 1 - s.beta1, c2: 1 - s.beta2 };
  SCALARS.forEach((name, j) => {
    floats[6 + j] = values[name];
  });
  const amsgrad = maxExpAvgSq !== null;
  const pipeline = c.pipeline(`adamUpdate|${amsgrad ? 'amsgrad' : 'plain'}`, () => shader(amsgrad));
  const views = maxExpAvgSq ? [param, grad, expAvg, expAvgSq, maxExpAvgSq] : [param, grad, expAvg, expAvgSq];
  c.dispatch(
    pipeline,
    words,
    views.map((view) => bindingOf(view.storage)),
    c.grid(Math.ceil(n / WG)),
  );
};
