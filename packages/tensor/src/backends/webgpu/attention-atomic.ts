import { each } from './attention-shared.js';
import { metaStruct, u } from './wgsl.js';

/**
 * Float accumulation into global memory for the attention backward's fused pass. WGSL has no
 * float atomics, so an add is a compare-exchange loop on the f32's bits: the buffer is bound as
 * `array<atomic<u32>>`. The four components of a vec4 are loaded together and their exchanges
 * interleaved, so a thread has four memory round trips in flight, not one. The order of the adds
 * between workgroups is not fixed: sums differ run to run in the last bits (as PyTorch's SDPA
 * backward, whose dq also takes atomic adds).
 */

/** WGSL binding of `name` as the atomic words of an f32 buffer. */
export function atomicBinding(name: string, binding: number): string {
  return `@group(0) @binding(${binding}) var<storage, read_write> ${name}: array<atomic<u32>>;`;
}

/** WGSL function `add_<name>(i, x, n)`: adds x's first n (≤ 4) components to words i… of `name`. */
export function atomicAdd4(name: string): string {
  const bit = (w: number) => `${1 << w}u`;
  return `fn add_${name}(i: u32, x: vec4<f32>, n: u32) {
  var old = vec4<u32>(0u);
  ${each(4, (w) => `if (${w}u < n) { old[${w}] = atomicLoad(&${name}[i + ${w}u]); }`, '\n  ')}
  var left = (1u << n) - 1u;
  loop {
    ${each(
      4,
      (w) => `if ((left & ${bit(w)}) != 0u) {
      let r = atomicCompareExchangeWeak(&${name}[i + ${w}u], old[${w}], bitcast<u32>(bitcast<f32>(old[${w}]) + x[${w}]));
      if (r.exchanged) { left &= ~${bit(w)}; } else { old[${w}] = r.old_value; }
    }`,
      '\n    ',
    )}
    if (left == 0u) { break; }
  }
}`;
}

/** WGSL of a kernel zeroing the first U word 0 floats of binding 1 (the accumulators' start). */
export function zeroSource(): string {
  return `${metaStruct(1)}
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i < ${u(0)}) { dst[i] = 0.0; }
}`;
}
