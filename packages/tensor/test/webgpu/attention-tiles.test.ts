/**
 * The attention kernels' tile choice (no device needed): SwiftShader gets register tiles of at
 * most 2 × 2 scores a thread (its compiler took minutes over the larger ones and the page lost
 * its device), other adapters the first tile that fits their workgroup memory; a given shape
 * (the benches' A/B) is taken as it is or refused; the kernel choice round-trips.
 */
import { describe, expect, it } from 'vitest';
import {
  attentionKernels,
  chooseTile,
  pickTile,
  setAttentionKernels,
  type Tile,
} from '../../src/backends/webgpu/attention-shared.js';
import type { WebGPUContext } from '../../src/backends/webgpu/context.js';

const TILES: Tile[] = [
  { br: 64, bc: 32, ty: 16, tx: 8 }, // 4 × 4 scores a thread
  { br: 64, bc: 16, ty: 16, tx: 8 }, // 4 × 2
  { br: 32, bc: 16, ty: 16, tx: 8 }, // 2 × 2
  { br: 16, bc: 16, ty: 16, tx: 8 }, // 1 × 2
];
const bytes = (t: Tile) => 16 * t.br * t.bc;

function context(storage: number, info?: Partial<GPUAdapterInfo>): WebGPUContext {
  return {
    limits: { maxComputeWorkgroupStorageSize: storage },
    adapterInfo: info,
  } as unknown as WebGPUContext;
}

describe('attention tile choice', () => {
  it('takes the first tile that fits on hardware GPUs and lavapipe', () => {
    expect(chooseTile(context(48 * 1024, { vendor: 'nvidia', architecture: 'hopper' }), TILES, bytes)).toBe(
      TILES[0],
    );
    expect(
      chooseTile(
        context(32 * 1024, { vendor: 'mesa', architecture: 'software', device: 'llvmpipe' }),
        TILES,
        bytes,
      ),
    ).toBe(TILES[0]);
    expect(chooseTile(context(16 * 1024, undefined), TILES, bytes)).toBe(TILES[1]);
    expect(chooseTile(context(1024, undefined), TILES, bytes)).toBe(TILES[3]);
  });

  it('caps SwiftShader at 2 × 2 scores a thread', () => {
    const swiftShader = { vendor: 'google', architecture: 'swiftshader', device: '', description: '' };
    expect(chooseTile(context(32 * 1024, swiftShader), TILES, bytes)).toBe(TILES[2]);
    expect(chooseTile(context(4 * 1024, swiftShader), TILES, bytes)).toBe(TILES[3]);
  });

  it('takes a given BRxBCxTYxTX shape over the candidates, and refuses one that does not divide or fit', () => {
    const c = context(48 * 1024, { vendor: 'nvidia', architecture: 'hopper' });
    expect(pickTile(c, TILES, 0, '', bytes)).toBe(TILES[0]);
    expect(pickTile(c, TILES, 2, '', bytes)).toBe(TILES[2]);
    expect(pickTile(c, TILES, 0, '32x32x8x8', bytes)).toEqual({ br: 32, bc: 32, ty: 8, tx: 8 });
    expect(() => pickTile(c, TILES, 0, '32x30x8x8', bytes)).toThrow(/got '32x30x8x8'/);
    expect(() => pickTile(c, TILES, 0, '128x64x16x8', bytes)).toThrow(
      /≤ 49152 bytes, got '128x64x16x8' \(131072 bytes\)/,
    );
  });

  it('setAttentionKernels returns the previous choice and restores it', () => {
    const start = attentionKernels();
    expect(start.dq).toBe('kernel');
    const before = setAttentionKernels({ dq: 'fused', subgroups: 'off' });
    expect(before).toEqual(start);
    expect(attentionKernels()).toEqual({ ...start, dq: 'fused', subgroups: 'off' });
    setAttentionKernels(before);
    expect(attentionKernels()).toEqual(start);
  });
});
