import { attentionKernels, range, viewBase, W } from './attention-shared.js';
import type { WebGPUContext } from './context.js';
import { metaStruct, u } from './wgsl.js';

/**
 * The backward's pre-pass D = rowsum(grad ∘ out), one value per query row, with LANES consecutive
 * threads per row reading consecutive columns (coalesced) and summing across the lanes: by
 * subgroup shuffles where the device has `subgroups` with at least LANES lanes, else through
 * workgroup memory. On the H200 the one-thread-a-row kernel this replaced, each thread walking
 * its row's 64 columns, took 44 µs at B = 8, H = 12, T = 512 (25 MB read: ≈ 0.6 TB/s).
 */

const WG = 256;

/**
 * Lanes per row, 16 (64 columns in 4 reads of 64 contiguous bytes each) or the smallest subgroup
 * where that is fewer, and whether they sum by subgroup shuffles (the choice's `subgroups`).
 */
export function dsumPlan(c: WebGPUContext): { lanes: number; subgroups: boolean } {
  const size = c.adapterInfo?.subgroupMinSize ?? 0;
  const subgroups = attentionKernels().subgroups !== 'off' && c.features.has('subgroups') && size >= 4;
  return { lanes: subgroups ? Math.min(16, size) : 16, subgroups };
}

export function dsumSource(lanes: number, subgroups: boolean): string {
  const rows = WG / lanes;
  const masks = range(Math.log2(lanes)).map((i) => 1 << i);
  const reduce = subgroups
    ? masks.map((m) => `acc += subgroupShuffleXor(acc, ${m}u);`).join('\n  ')
    : `Red[lid] = acc;
  workgroupBarrier();
  ${[...masks]
    .reverse()
    .map((m) => `if (lane < ${m}u) { Red[lid] += Red[lid + ${m}u]; }\n  workgroupBarrier();`)
    .join('\n  ')}
  acc = Red[lid];`;
  return `${subgroups ? 'enable subgroups;' : ''}
${metaStruct(W.words)}
@group(0) @binding(1) var<storage, read_write> dsum: array<f32>;
@group(0) @binding(2) var<storage, read> outv: array<f32>;
@group(0) @binding(3) var<storage, read> gout: array<f32>;
${subgroups ? '' : `var<workgroup> Red: array<f32, ${WG}>;`}
@compute @workgroup_size(${WG})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let L = ${u(W.l)};
  let H = ${u(W.h)};
  let EV = ${u(W.words - 1)};
  let total = ${u(W.b)} * H * L;
  let lane = lid % ${lanes}u;
  let idx = (wid.x + wid.y * nwg.x) * ${rows}u + lid / ${lanes}u;
  // no early return: every lane takes part in the reduction (a row past the end reads row 0)
  let r = select(0u, idx, idx < total);
  let row = r % L;
  let bh = r / L;
  let b = bh / H;
  let h = bh % H;
  ${viewBase('outv', W.out, 'b', 'h')}
  ${viewBase('gout', W.grad, 'b', 'h')}
  var acc = 0.0;
  for (var c = lane; c < EV; c += ${lanes}u) {
    acc += outv[outv_base + i32(row) * outv_r + i32(c) * outv_d] * gout[gout_base + i32(row) * gout_r + i32(c) * gout_d];
  }
  ${reduce}
  if (lane == 0u && idx < total) { dsum[idx] = acc; }
}`;
}

/** Workgroups for `rows` query rows. */
export function dsumGroups(rows: number, lanes: number): number {
  return Math.ceil(rows / (WG / lanes));
}
