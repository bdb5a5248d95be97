import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkpointFromBytes,
  checkpointToBytes,
  Linear,
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
} from '@lowrank/nn';
import { saveCheckpoint } from '@lowrank/nn/node';
import { Generator } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';

const model = () => new Linear(3, 2, { generator: new Generator(4) });

/** The bytes of a checkpoint whose metadata JSON was rewritten by `edit`. */
async function withMeta(edit: (meta: Record<string, unknown>) => void): Promise<Uint8Array> {
  const { tensors, metadata } = parseSafetensors(await checkpointToBytes({ model: model(), step: 3 }));
  const meta = JSON.parse(metadata['lowrank.checkpoint']) as Record<string, unknown>;
  edit(meta);
  return serializeSafetensors(new Map(Object.entries(tensors)), {
    ...metadata,
    'lowrank.checkpoint': JSON.stringify(meta),
  });
}

describe('checkpoint safety', () => {
  it('a corrupted tensor byte is refused by the checksum; an intact file loads', async () => {
    const bytes = await checkpointToBytes({ model: model(), step: 3 });
    expect(checkpointFromBytes(bytes, { model: model() }).step).toBe(3);
    const bad = bytes.slice();
    bad.fill(0xff, bad.length - 8); // the last 8 bytes are tensor data
    expect(() => checkpointFromBytes(bad, { model: model() })).toThrow(SafetensorsError);
    expect(() => checkpointFromBytes(bad, { model: model() })).toThrow(
      /tensor data is corrupt: checksum [0-9a-f]{8}, saved [0-9a-f]{8}/,
    );
    // a file without a checksum (written before they existed) still loads
    const old = await withMeta((m) => delete m.checksum);
    expect(checkpointFromBytes(old, { model: model() }).step).toBe(3);
  });

  it('the saved step must be a non-negative integer', async () => {
    for (const step of [-7, 1.5, '2', undefined]) {
      const bytes = await withMeta((m) => {
        m.step = step;
      });
      expect(() => checkpointFromBytes(bytes, { model: model() })).toThrow(
        /step must be a non-negative integer, got/,
      );
    }
    await expect(checkpointToBytes({ model: model(), step: -1 })).rejects.toThrow(/non-negative integer/);
  });

  it('saving removes temporary files of dead writers, keeps those of live ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nn-orphans-'));
    const path = join(dir, 'checkpoint.safetensors');
    // a pid that has certainly exited: a child that ran and was reaped
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const orphans = [`${dead}-aaaaaa`, `${dead}-bbbbbb`].map((s) => `checkpoint.safetensors.tmp-${s}`);
    const live = `checkpoint.safetensors.tmp-${process.pid}-cccccc`;
    const other = 'other.safetensors.tmp-1-dddddd';
    for (const f of [...orphans, live, other]) writeFileSync(join(dir, f), 'x');
    await saveCheckpoint(path, { model: model(), step: 1 });
    expect(existsSync(path)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['checkpoint.safetensors', live, other].sort());
  });
});
