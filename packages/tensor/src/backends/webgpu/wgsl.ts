import type { DType } from '../../dtype.js';

export { type Coalesced, coalesce } from '../../shape.js';

/** WGSL element type of each dtype on the GPU (bool is a u32 holding 0 or 1). */
export const WGSL_TYPE: Record<DType, string> = { float32: 'f32', int32: 'i32', bool: 'u32' };

/** Elementwise kernels run this many invocations per workgroup. */
export const WG = 256;

/** The WGSL expression reading parameter word `i` of the uniform block `M`. */
export function u(i: number): string {
  return `U.v[${i >> 2}].${'xyzw'[i & 3]}`;
}

/** Same word read as a signed integer (strides may be negative). */
export function s(i: number): string {
  return `bitcast<i32>(${u(i)})`;
}

export function metaStruct(words: number): string {
  return `struct Meta { v: array<vec4<u32>, ${Math.max(1, Math.ceil(words / 4))}> }
@group(0) @binding(0) var<uniform> U: Meta;`;
}

/** Linear invocation index over a 2-D grid of 1-D workgroups of `wg` threads. */
export function linearIndex(wg: number): string {
  return `gid.x + gid.y * nwg.x * ${wg}u`;
}

export const MAIN_ARGS =
  '@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>';

/** Helper functions shared by float kernels (NaN-safe under any compiler assumptions). */
export const PRELUDE = /* wgsl */ `
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
var<private> NAN_BITS: u32 = 0x7fc00000u;
fn nan_f() -> f32 { return bitcast<f32>(NAN_BITS); }
var<private> INF_BITS: u32 = 0x7f800000u;
fn inf_f() -> f32 { return bitcast<f32>(INF_BITS); }
fn tanh_s(x: f32) -> f32 {
  let t = exp(-2.0 * abs(x));
  let r = (1.0 - t) / (1.0 + t);
  return select(r, -r, x < 0.0);
}
fn sigmoid_s(x: f32) -> f32 {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
fn erf_f(x: f32) -> f32 {
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.5 * a);
  let y = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(1.0 - y, y - 1.0, x < 0.0);
}
fn is_inf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }
fn pow_f(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (is_nan(a) || is_nan(b)) { return nan_f(); }
  if (b == 1.0) { return a; }
  if (b == 2.0) { return a * a; }
  let aa = abs(a);
  if (is_inf(b)) {
    if (aa == 1.0) { return nan_f(); }
    return select(0.0, inf_f(), (aa > 1.0) == (b > 0.0));
  }
  let bint = fract(b) == 0.0;
  if (a < 0.0 && !bint && !is_inf(a)) { return nan_f(); }
  var r: f32;
  if (aa == 0.0) { r = select(inf_f(), 0.0, b > 0.0); }
  else if (is_inf(a)) { r = select(0.0, inf_f(), b > 0.0); }
  else { r = exp2(b * log2(aa)); }
  if (bint && fract(b * 0.5) != 0.0 && (bitcast<u32>(a) >> 31u) == 1u) { r = -r; }
  return r;
}
// sin/cos after reducing x to [-pi, pi] (Cody-Waite, accurate for |x| up to ~1e4)
fn reduce_2pi(x: f32) -> f32 {
  let k = round(x * 0.15915494309189535);
  return (x - k * 6.28125) - k * 0.0019353071795864769;
}
fn pow_i(a: i32, b: i32) -> i32 {
  if (b < 0) {
    if (a == 1) { return 1; }
    if (a == -1) { return select(-1, 1, (b & 1) == 0); }
    return 0;
  }
  var base = a;
  var e = u32(b);
  var r = 1;
  loop {
    if (e == 0u) { break; }
    if ((e & 1u) == 1u) { r = r * base; }
    base = base * base;
    e = e >> 1u;
  }
  return r;
}
fn f2i(x: f32) -> i32 {
  if ((bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u) { return 0; }
  let t = trunc(x);
  if (abs(t) < 2147483648.0) { return i32(t); }
  let r = t - 4294967296.0 * floor(t / 4294967296.0);
  return bitcast<i32>(u32(r));
}
fn f_nonzero(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) != 0u; }
`;

/**
 * WGSL statements that turn the flat row-major index `idxVar` into element offsets of several
 * strided operands. Offsets start from `offsets[k]` (WGSL i32 expressions); shape word `shapeAt + d`
 * and stride word `strideAt[k] + d` are read from the uniform block.
 */
export function unravel(
  idxVar: string,
  rank: number,
  shapeAt: number,
  names: readonly string[],
  offsets: readonly string[],
  strideAt: readonly number[],
): string {
  const lines: string[] = [];
  for (let k = 0; k < names.length; k++) lines.push(`var ${names[k]} = ${offsets[k]};`);
  if (rank === 0) return lines.join('\n  ');
  lines.push(`var rem_ = ${idxVar};`);
  for (let d = rank - 1; d >= 0; d--) {
    if (d > 0) {
      lines.push(`{ let c_ = i32(rem_ % ${u(shapeAt + d)}); rem_ = rem_ / ${u(shapeAt + d)};`);
    } else {
      lines.push('{ let c_ = i32(rem_);');
    }
    for (let k = 0; k < names.length; k++) lines.push(`  ${names[k]} += c_ * ${s(strideAt[k] + d)};`);
    lines.push('}');
  }
  return lines.join('\n  ');
}
