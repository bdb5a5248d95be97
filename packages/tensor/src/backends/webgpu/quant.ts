import type { QuantView } from '../../backend.js';
import { OpError } from '../../errors.js';
import { DOUBLE_QUANT_BLOCK, NF4_VALUES } from '../../quant/format.js';
import type { Storage } from '../../storage.js';
import type { WebGPUContext } from './context.js';
import type { GpuKernel } from './kernel.js';
import { bindingOf } from './program.js';
import { linearIndex, MAIN_ARGS, metaStruct, s, u, WG } from './wgsl.js';

/**
 * The quantized kernels in WGSL. `wq(r, c)` decodes one weight value where it is loaded: the
 * code from its packed u32 word (a nibble into the 16-entry NF4 table, or a signed byte), times
 * its block's scale (itself decoded from a byte, a per-256 step and the mean under double
 * quantization). `quantMatmul` computes a 64×64 output tile per workgroup of 256 invocations,
 * 4×4 outputs each, over K in steps of 16: the weight tile is filled through `wq` (for x·Wᵀ the
 * invocations walk along a row of W, the packed order), so each weight value is decoded once per
 * 64 rows of x (once in all for decoding's M ≤ 64), accumulating in f32; the float32 weight
 * exists only tile by tile in workgroup memory.
 *
 * Uniform words shared by both kernels: 0 rows, 1 cols, 2 wordsPerRow, 3 blocksPerRow,
 * 4 blockSize, 5 scaleMean (f32 bits); quantMatmul adds 6 M, 7 K, 8 N, 9 a offset,
 * 10 a row stride, 11 a column stride (i32).
 */

/** Output tile (TILE × TILE per workgroup), K step, micro-tile per invocation. */
const TILE = 64;
const BK = 16;
const MICRO = 4;
const SIDE = TILE / MICRO;
const THREADS = SIDE * SIDE;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * 16-bit weights: `wq(r, c)` takes the half word of column c (low half for even c); f16 through
 * WGSL's `unpack2x16float`, bf16 as the upper half of an f32's bits. No scales are bound.
 */
function halfDecoder(w: QuantView): string {
  const value =
    w.format === 'f16'
      ? 'return unpack2x16float(word)[c & 1u];'
      : 'return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (c & 1u) == 1u));';
  return `@group(0) @binding(2) var<storage, read> codes: array<u32>;
fn wq(r: u32, c: u32) -> f32 {
  let word = codes[r * ${u(2)} + (c >> 1u)];
  ${value}
}`;
}

const isHalf = (w: QuantView): boolean => w.format === 'f16' || w.format === 'bf16';

function decoder(w: QuantView): string {
  if (isHalf(w)) return halfDecoder(w);
  const table = Array.from(NF4_VALUES, (v) => v.toPrecision(9)).join(', ');
  const code =
    w.format === 'nf4'
      ? `let word = codes[r * ${u(2)} + (c >> 3u)];
  let v = nf4[(word >> (4u * (c & 7u))) & 15u];`
      : `let word = codes[r * ${u(2)} + (c >> 2u)];
  let v = f32(bitcast<i32>(word << (24u - 8u * (c & 3u))) >> 24u);`;
  const scale = w.steps
    ? `let sw = scales[bi >> 2u];
  let sc = f32(bitcast<i32>(sw << (24u - 8u * (bi & 3u))) >> 24u);
  let scale = sc * steps[bi / ${DOUBLE_QUANT_BLOCK}u] + bitcast<f32>(${u(5)});`
    : 'let scale = scales[bi];';
  return `@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<${w.steps ? 'u32' : 'f32'}>;
${w.steps ? '@group(0) @binding(4) var<storage, read> steps: array<f32>;' : ''}
var<private> nf4: array<f32, 16> = array<f32, 16>(${table});
fn wq(r: u32, c: u32) -> f32 {
  ${code}
  let bi = r * ${u(3)} + c / ${u(4)};
  ${scale}
  return v * scale;
}`;
}

function words(w: QuantView, extra: number): Uint32Array {
  const out = new Uint32Array(6 + extra);
  out[0] = w.rows;
  out[1] = w.cols;
  out[2] = Math.ceil(w.cols / (w.format === 'nf4' ? 8 : w.format === 'int8' ? 4 : 2));
  out[3] = Math.ceil(w.cols / w.blockSize);
  out[4] = w.blockSize;
  new Float32Array(out.buffer)[5] = w.scaleMean;
  return out;
}

function key(w: QuantView): string {
  return `${w.format}|${w.steps ? 'dq' : 'f'}`;
}

function weightBindings(w: QuantView): ReturnType<typeof bindingOf>[] {
  if (isHalf(w)) return [bindingOf(w.codes)];
  return [bindingOf(w.codes), bindingOf(w.scales), ...(w.steps ? [bindingOf(w.steps)] : [])];
}

export const quantMatmul: GpuKernel<'quantMatmul'> = (c, a, w, m, transpose) => {
  c.check('quantMatmul');
  const [k, n] = transpose ? [w.cols, w.rows] : [w.rows, w.cols];
  const out = c.allocate('quantMatmul', 'float32', m * n);
  if (m === 0 || n === 0) return out;
  const groups: [number, number, number] = [Math.ceil(n / TILE), Math.ceil(m / TILE), 1];
  const max = c.device.limits.maxComputeWorkgroupsPerDimension;
  if (groups[0] > max || groups[1] > max)
    throw new OpError(
      'quantMatmul',
      `[${m}, ${k}]·[${k}, ${n}] needs more than ${max} tiles of ${TILE} along a dimension`,
    );
  const meta = words(w, 6);
  const ints = new Int32Array(meta.buffer);
  meta[6] = m;
  meta[7] = k;
  meta[8] = n;
  meta[9] = a.offset;
  ints[10] = a.strides[0];
  ints[11] = a.strides[1];
  // weight tile element (kk, nn) of the [K, N] operand: W[n0 + nn, k0 + kk] for x·Wᵀ (consecutive
  // invocations walk along a row of W, the packed order), W[k0 + kk, n0 + nn] for x·W
  const load = transpose
    ? `let nn = idx / ${BK}u;
      let kk = idx % ${BK}u;
      let wr = col0 + nn;
      let wc = k0 + kk;
      tw[kk * ${TILE}u + nn] = select(0.0, wq(min(wr, ${u(0)} - 1u), min(wc, ${u(1)} - 1u)), wr < N && wc < K);`
    : `let kk = idx / ${TILE}u;
      let nn = idx % ${TILE}u;
      let wr = k0 + kk;
      let wc = col0 + nn;
      tw[kk * ${TILE}u + nn] = select(0.0, wq(min(wr, ${u(0)} - 1u), min(wc, ${u(1)} - 1u)), wr < K && wc < N);`;
  const pipeline = c.pipeline(`quantMatmul|${key(w)}|${transpose ? 't' : 'n'}`, () => {
    return `${metaStruct(meta.length)}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${decoder(w)}
@group(0) @binding(${isHalf(w) ? 3 : w.steps ? 5 : 4}) var<storage, read> a: array<f32>;
var<workgroup> ta: array<f32, ${BK * TILE}>;
var<workgroup> tw: array<f32, ${BK * TILE}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let M = ${u(6)};
  let K = ${u(7)};
  let N = ${u(8)};
  let row0 = wid.y * ${TILE}u;
  let col0 = wid.x * ${TILE}u;
  let tx = li % ${SIDE}u;
  let ty = li / ${SIDE}u;
  ${range(MICRO * MICRO)
    .map((i) => `var acc${i} = 0.0;`)
    .join(' ')}
  for (var k0 = 0u; k0 < K; k0 += ${BK}u) {
    for (var e = 0u; e < ${(BK * TILE) / THREADS}u; e++) {
      let idx = li + e * ${THREADS}u;
      // A tile element (mm, kk): consecutive invocations walk along a row of x
      let mm = idx / ${BK}u;
      let ka = idx % ${BK}u;
      let gi = row0 + mm;
      let gk = k0 + ka;
      let ai = i32(${u(9)}) + i32(min(gi, M - 1u)) * ${s(10)} + i32(min(gk, K - 1u)) * ${s(11)};
      ta[ka * ${TILE}u + mm] = select(0.0, a[ai], gi < M && gk < K);
      ${load}
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      let ab = kk * ${TILE}u + ty * ${MICRO}u;
      let wb = kk * ${TILE}u + tx * ${MICRO}u;
      ${range(MICRO)
        .map((t) => `let a${t} = ta[ab + ${t}u]; let w${t} = tw[wb + ${t}u];`)
        .join('\n      ')}
      ${range(MICRO * MICRO)
        .map((i) => `acc${i} += a${Math.floor(i / MICRO)} * w${i % MICRO};`)
        .join('\n      ')}
    }
    workgroupBarrier();
  }
  let r0 = row0 + ty * ${MICRO}u;
  let c0 = col0 + tx * ${MICRO}u;
  ${range(MICRO * MICRO)
    .map((i) => {
      const [r, cc] = [Math.floor(i / MICRO), i % MICRO];
      return `if (r0 + ${r}u < M && c0 + ${cc}u < N) { out[(r0 + ${r}u) * N + c0 + ${cc}u] = acc${i}; }`;
    })
    .join('\n  ')}
}`;
  });
  c.dispatch(pipeline, meta, [bindingOf(out), ...weightBindings(w), bindingOf(a.storage)], groups);
  return out;
};

export const dequantize: GpuKernel<'dequantize'> = (c: WebGPUContext, w: QuantView): Storage => {
  c.check('dequantize');
  const total = w.rows * w.cols;
  const out = c.allocate('dequantize', 'float32', total);
  if (total === 0) return out;
  const meta = words(w, 0);
  const pipeline = c.pipeline(
    `dequantize|${key(w)}`,
    () => `${metaStruct(meta.length)}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${decoder(w)}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let idx = ${linearIndex(WG)};
  if (idx >= ${u(0)} * ${u(1)}) { return; }
  out[idx] = wq(idx / ${u(1)}, idx % ${u(1)});
}`,
  );
  c.dispatch(pipeline, meta, [bindingOf(out), ...weightBindings(w)], c.grid(Math.ceil(total / WG)));
  return out;
};

/**
 * quant/format.ts's quantization on the GPU, in float32, in up to three dispatches: each block's
 * absmax (one invocation per block), each code word (one per u32 word: the nearest NF4 value of
 * x / absmax with ties to the lower code, or round-half-away(127·x / absmax)), and under double
 * quantization each 256-scale group's step and int8 scale codes (one per group), centred by the
 * given mean. Uniform words: 0 rows, 1 cols, 2 wordsPerRow, 3 blocksPerRow, 4 blockSize,
 * 5 scaleMean (f32 bits), 6 w offset, 7 scale count, 8 groups.
 */
export const quantize: GpuKernel<'quantize'> = (c, w, format, rows, cols, blockSize, scaleMean) => {
  c.check('quantize');
  if (format === 'f16' || format === 'bf16') return quantizeHalf(c, w, format, rows, cols);
  const nf4 = format === 'nf4';
  const per = nf4 ? 8 : 4;
  const wpr = Math.ceil(cols / per);
  const bpr = Math.ceil(cols / blockSize);
  const nScales = rows * bpr;
  const groups = Math.ceil(nScales / DOUBLE_QUANT_BLOCK);
  const dq = scaleMean !== null;
  const codes = c.allocate('quantize', 'int32', rows * wpr);
  const scales = dq
    ? c.allocate('quantize', 'int32', Math.ceil(nScales / 4))
    : c.allocate('quantize', 'float32', nScales);
  const steps = dq ? c.allocate('quantize', 'float32', groups) : null;
  if (rows * cols === 0) return { codes, scales, steps };
  const meta = new Uint32Array(9);
  meta.set([rows, cols, wpr, bpr, blockSize]);
  new Float32Array(meta.buffer)[5] = scaleMean ?? 0;
  meta[6] = w.offset;
  meta[7] = nScales;
  meta[8] = groups;
  const absmax = c.scratch('quantize', nScales);
  const sc = dq ? c.scratch('quantize', nScales) : null;
  const head = `${metaStruct(meta.length)}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let idx = ${linearIndex(WG)};`;
  const scaleOut = { buffer: sc ?? (scales.handle as GPUBuffer), size: nScales * 4 };
  const absBinding = { buffer: absmax, size: nScales * 4 };
  // 1. absmax and scale of each block
  const p1 = c.pipeline(
    `quantize|scales|${format}`,
    () => `@group(0) @binding(1) var<storage, read_write> am: array<f32>;
@group(0) @binding(2) var<storage, read_write> sc: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
${head}
  if (idx >= ${u(7)}) { return; }
  let r = idx / ${u(3)};
  let c0 = (idx % ${u(3)}) * ${u(4)};
  let c1 = min(${u(1)}, c0 + ${u(4)});
  var m = 0.0;
  for (var col = c0; col < c1; col++) { m = max(m, abs(w[${u(6)} + r * ${u(1)} + col])); }
  am[idx] = m;
  sc[idx] = ${nf4 ? 'm' : 'm / 127.0'};
}`,
  );
  c.dispatch(p1, meta, [absBinding, scaleOut, bindingOf(w.storage)], c.grid(Math.ceil(nScales / WG)));
  // 2. the code words
  const table = Array.from(NF4_VALUES, (v) => v.toPrecision(9)).join(', ');
  const code = nf4
    ? `var v = 0.0;
      if (a != 0.0) { v = x / a; }
      var best = 0u;
      var err = abs(v - nf4[0]);
      for (var q = 1u; q < 16u; q++) {
        let e = abs(v - nf4[q]);
        if (e < err) { best = q; err = e; }
      }
      word = word | (best << (4u * j));`
    : `var k = 0;
      if (a != 0.0) {
        let q = 127.0 * x / a;
        k = clamp(i32(sign(q) * floor(abs(q) + 0.5)), -127, 127);
      }
      word = word | ((bitcast<u32>(k) & 255u) << (8u * j));`;
  const p2 = c.pipeline(
    `quantize|codes|${format}`,
    () => `@group(0) @binding(1) var<storage, read_write> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> am: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
var<private> nf4: array<f32, 16> = array<f32, 16>(${table});
${head}
  if (idx >= ${u(0)} * ${u(2)}) { return; }
  let r = idx / ${u(2)};
  let wi = idx % ${u(2)};
  var word = 0u;
  for (var j = 0u; j < ${per}u; j++) {
    let col = wi * ${per}u + j;
    if (col < ${u(1)}) {
      let x = w[${u(6)} + r * ${u(1)} + col];
      let a = am[r * ${u(3)} + col / ${u(4)}];
      ${code}
    }
  }
  codes[idx] = word;
}`,
  );
  c.dispatch(
    p2,
    meta,
    [bindingOf(codes), absBinding, bindingOf(w.storage)],
    c.grid(Math.ceil((rows * wpr) / WG)),
  );
  // 3. double quantization of the scales
  if (dq && sc && steps) {
    const p3 = c.pipeline(
      'quantize|double',
      () => `@group(0) @binding(1) var<storage, read_write> words: array<u32>;
@group(0) @binding(2) var<storage, read_write> steps: array<f32>;
@group(0) @binding(3) var<storage, read_write> sc: array<f32>;
${head}
  if (idx >= ${u(8)}) { return; }
  let mean = bitcast<f32>(${u(5)});
  let i0 = idx * ${DOUBLE_QUANT_BLOCK}u;
  let i1 = min(${u(7)}, i0 + ${DOUBLE_QUANT_BLOCK}u);
  var a = 0.0;
  for (var i = i0; i < i1; i++) { a = max(a, abs(sc[i] - mean)); }
  steps[idx] = a / 127.0;
  for (var wi = i0 / 4u; wi < (i1 + 3u) / 4u; wi++) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let i = wi * 4u + j;
      if (i < i1) {
        var k = 0;
        if (a != 0.0) {
          let q = 127.0 * (sc[i] - mean) / a;
          k = clamp(i32(sign(q) * floor(abs(q) + 0.5)), -127, 127);
        }
        word = word | ((bitcast<u32>(k) & 255u) << (8u * j));
      }
    }
    words[wi] = word;
  }
}`,
    );
    c.dispatch(
      p3,
      meta,
      [bindingOf(scales), bindingOf(steps), { buffer: sc, size: nScales * 4 }],
      c.grid(Math.ceil(groups / WG)),
    );
    c.release(sc);
  }
  c.release(absmax);
  return { codes, scales, steps };
};

/**
 * Rounding a float32 value to a 16-bit pattern in WGSL integer arithmetic, as quant/half.ts does
 * on the host (nearest, ties to even; NaN quiet with its sign). A GPU may flush float32
 * subnormals on load; they round to ±0 in f16 and bf16 keeps only their upper bits either way.
 * A finite value past ±65504 becomes ±Infinity in f16 (the host refuses it; a kernel cannot).
 */
const HALF_ENCODERS = `fn rne_shift(m: u32, s: u32) -> u32 {
  let q = m >> s;
  let rem = m & ((1u << s) - 1u);
  let half = 1u << (s - 1u);
  return select(q, q + 1u, rem > half || (rem == half && (q & 1u) == 1u));
}
fn f16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let ex = (b >> 23u) & 0xffu;
  let man = b & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u | (man >> 13u), man != 0u); }
  let e = i32(ex) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e >= 1) { return sign | rne_shift((u32(e) << 23u) | man, 13u); }
  if (ex == 0u || e < -10) { return sign; }
  return sign | rne_shift(man | 0x800000u, u32(14 - e));
}
fn bf16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return (b >> 16u) | 0x40u; }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}`;

/** 16-bit quantize: one invocation per u32 word (two columns). Uniform words: 0 rows, 1 cols, 2 wordsPerRow, 3 w offset. */
function quantizeHalf(
  c: WebGPUContext,
  w: Parameters<GpuKernel<'quantize'>>[1],
  format: 'f16' | 'bf16',
  rows: number,
  cols: number,
): ReturnType<GpuKernel<'quantize'>> {
  const wpr = Math.ceil(cols / 2);
  const codes = c.allocate('quantize', 'int32', rows * wpr);
  const scales = c.allocate('quantize', 'float32', 0);
  if (rows * cols === 0) return { codes, scales, steps: null };
  const meta = Uint32Array.from([rows, cols, wpr, w.offset]);
  const enc = format === 'f16' ? 'f16_bits' : 'bf16_bits';
  const pipeline = c.pipeline(
    `quantize|${format}`,
    () => `${metaStruct(meta.length)}
@group(0) @binding(1) var<storage, read_write> codes: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
${HALF_ENCODERS}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let idx = ${linearIndex(WG)};
  if (idx >= ${u(0)} * ${u(2)}) { return; }
  let r = idx / ${u(2)};
  let col = (idx % ${u(2)}) * 2u;
  let base = ${u(3)} + r * ${u(1)} + col;
  var word = ${enc}(w[base]);
  if (col + 1u < ${u(1)}) { word = word | (${enc}(w[base + 1u]) << 16u); }
  codes[idx] = word;
}`,
  );
  c.dispatch(pipeline, meta, [bindingOf(codes), bindingOf(w.storage)], c.grid(Math.ceil((rows * wpr) / WG)));
  return { codes, scales, steps: null };
}
