import '@lowrank/autograd';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { safetensorsEntries } from '@lowrank/nn';
import { describe, expect, it } from 'vitest';
import { type AsyncRangeFileReader, AutoModelForCausalLM, type FileReader } from '../src/auto.js';
import {
  type AsyncRangeReader,
  asyncRangeSafetensors,
  blobRangeReader,
  isAsyncRangeReader,
  isRangeReader,
} from '../src/loading-source.js';
import { stateBits } from './model-values.js';

/**
 * A browser's load from `Blob` / `File` objects (a picked folder, an OPFS file): the
 * `.safetensors` files are `blobRangeReader`s, read asynchronously by range as the streaming
 * loader reaches each tensor (Node 20 has `Blob`, so this runs here). Checked against the load
 * from the files' bytes; every read is recorded, so the largest one is measured, not assumed.
 */
const fixtures = new URL('./fixtures/', import.meta.url).pathname;

interface Read {
  file: string;
  offset: number;
  length: number;
}

/** A folder of Blobs (each file of `dir`), `.safetensors` read by range with every read recorded. */
function blobFolder(dir: string, reads: Read[], wrap = (_file: string, r: AsyncRangeReader) => r) {
  const blobs = new Map(readdirSync(dir).map((f) => [f, new Blob([readFileSync(join(dir, f))])]));
  const read: AsyncRangeFileReader = async (name) => {
    const blob = blobs.get(name);
    if (!blob) return null;
    if (!name.endsWith('.safetensors')) return new Uint8Array(await blob.arrayBuffer());
    const inner = wrap(name, blobRangeReader(blob));
    return {
      async: true,
      size: inner.size,
      read: (offset, length) => {
        reads.push({ file: name, offset, length });
        return inner.read(offset, length);
      },
    };
  };
  return read;
}

const bytesOf =
  (dir: string): FileReader =>
  async (f) => {
    try {
      return new Uint8Array(readFileSync(join(dir, f)));
    } catch {
      return null;
    }
  };

describe('loads from Blobs (AsyncRangeReader)', () => {
  it('blobRangeReader reads a range of the blob; the two reader kinds tell apart', async () => {
    const r = blobRangeReader(new Blob([Uint8Array.from([1, 2, 3, 4, 5])]));
    expect(r.size).toBe(5);
    expect(Array.from(await r.read(1, 3))).toEqual([2, 3, 4]);
    expect(Array.from(await r.read(3, 10)), 'past the end: what is there').toEqual([4, 5]);
    expect(isAsyncRangeReader(r)).toBe(true);
    expect(isRangeReader(r), 'not a synchronous RangeReader').toBe(false);
    expect(isAsyncRangeReader({ size: 1, read: () => new Uint8Array(1) })).toBe(false);
  });

  for (const [name, sharded] of [
    ['peft-llama-tiny', false],
    ['llama3-bf16-sharded', true],
    ['peft-gpt2-tiny', false],
  ] as const)
    it(`${name}${sharded ? ' (sharded)' : ''}: the same weights as the bytes load; each read is the header or one tensor, the largest one tensor's bytes`, async () => {
      const dir = `${fixtures}${name}/base`;
      const reads: Read[] = [];
      const readsAtProgress: number[] = [];
      const model = await AutoModelForCausalLM.fromFiles(blobFolder(dir, reads), {
        onLoadProgress: () => readsAtProgress.push(reads.length),
      });
      const fromBytes = await AutoModelForCausalLM.fromFiles(bytesOf(dir));
      expect(await stateBits(model)).toEqual(await stateBits(fromBytes));

      const files = [...new Set(reads.map((r) => r.file))];
      expect(files.length > 1, 'shards').toBe(sharded);
      let tensorCount = 0;
      let largestTensor = 0;
      for (const f of files) {
        const bytes = readFileSync(join(dir, f));
        // bytes in the file (a bf16 tensor's two a value, not its decoded float32)
        const { tensors } = safetensorsEntries(new Uint8Array(bytes));
        const sizes = Object.values(tensors).map((t) => t.bytes.length);
        tensorCount += sizes.length;
        largestTensor = Math.max(largestTensor, ...sizes);
        const own = reads.filter((r) => r.file === f);
        // the 8-byte length, the header, then one read per tensor: the whole file, once
        expect(own[0]).toMatchObject({ offset: 0, length: 8 });
        expect(own.length).toBe(2 + sizes.length);
        expect(own.reduce((n, r) => n + r.length, 0)).toBe(bytes.length);
        expect(own.every((r) => r.length < bytes.length - 8)).toBe(true);
      }
      // each file's first two reads are its header's
      const tensorReads = files.flatMap((f) => reads.filter((r) => r.file === f).slice(2));
      expect(tensorReads.length).toBe(tensorCount);
      expect(Math.max(...tensorReads.map((r) => r.length)), 'the largest read: one tensor').toBe(
        largestTensor,
      );
      // the tensor loaded at progress call i was read just before it: one tensor's bytes at a time
      const headerReads = 2 * files.length;
      expect(readsAtProgress).toEqual(readsAtProgress.map((_, i) => headerReads + i + 1));
      model.dispose();
      fromBytes.dispose();
    });

  it('a truncated Blob is refused before any tensor loads; one that shrinks after opening, naming the tensor', async () => {
    const dir = `${fixtures}peft-llama-tiny/base`;
    const file = new Uint8Array(readFileSync(join(dir, 'model.safetensors')));
    // truncated on disk: the header's offsets run past the Blob's end
    const truncated = blobRangeReader(new Blob([file.subarray(0, file.length - 3)]));
    await expect(asyncRangeSafetensors(truncated)).rejects.toThrow(
      /^safetensors: tensor 'model\.norm\.weight': data_offsets \[\d+, \d+\] exceed the \d+ data bytes in the file$/,
    );
    const reads: Read[] = [];
    const truncatedFolder = blobFolder(dir, reads, () => truncated);
    await expect(AutoModelForCausalLM.fromFiles(truncatedFolder)).rejects.toThrow(
      /exceed the \d+ data bytes in the file/,
    );
    expect(reads.length, 'only the header was read').toBe(2);
    // the size taken when the reader was made, the Blob shorter by the time the loader reads
    const shrunk = (_f: string, r: AsyncRangeReader): AsyncRangeReader => ({
      ...r,
      size: file.length,
      read: (o, n) =>
        blobRangeReader(new Blob([file.subarray(0, file.length - 3)])).read(o, Math.min(n, file.length - o)),
    });
    await expect(AutoModelForCausalLM.fromFiles(blobFolder(dir, [], shrunk))).rejects.toThrow(
      /^safetensors: tensor 'model\.norm\.weight': read 253 of its 256 bytes: the file changed or is truncated$/,
    );
    // a read that fails (a File removed under the picker: NotReadableError)
    const failing = (_f: string, r: AsyncRangeReader): AsyncRangeReader => ({
      ...r,
      read: (o, n) => (o < 8 + 4096 ? r.read(o, n) : Promise.reject(new Error('NotReadableError'))),
    });
    await expect(AutoModelForCausalLM.fromFiles(blobFolder(dir, [], failing))).rejects.toThrow(
      /^safetensors: tensor '[\w.]+': reading bytes \d+–\d+ failed \(NotReadableError\): the file changed or is gone$/,
    );
  });
});
