import {
  type RawSafetensorsTensor,
  SafetensorsError,
  safetensorsHeaderLength,
  safetensorsLayout,
} from '@lowrank/nn';

/**
 * Safetensors files read by byte range (issue #17 item 2: a load never holds the file): the
 * 8-byte length, the header, then each tensor's range when the loader reaches it. Browser-safe;
 * `@lowrank/models/node` opens files this way.
 */

/** Random access to one file's bytes. */
export interface RangeReader {
  /** The file's length in bytes. */
  readonly size: number;
  /** `length` bytes from `offset` (a fresh buffer, or a view of bytes already held). */
  read(offset: number, length: number): Uint8Array;
  /** Releases the file (a descriptor); called once the load is done or failed. */
  close?(): void;
}

/**
 * Whether `v` is a `RangeReader` (and not a file's bytes).
 *
 * @example
 * isRangeReader(bytesRangeReader(new Uint8Array(8))); // true
 * isRangeReader(new Uint8Array(8)); // false
 */
export function isRangeReader(v: unknown): v is RangeReader {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && 'read' in v && 'size' in v;
}

/**
 * A `RangeReader` over bytes already in memory: each range is a view (no copy).
 *
 * @example
 * const r = bytesRangeReader(bytes);
 * r.read(0, 8); // the header length's 8 bytes
 */
export function bytesRangeReader(bytes: Uint8Array): RangeReader {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

/**
 * The tensors of a safetensors file behind `file`, checked from its header (as
 * `safetensorsEntries`), each one's `bytes` read from the file when first asked for (once
 * per access: a loader takes them once per tensor and drops them), so a load holds one tensor's
 * bytes at a time, never the file.
 *
 * @example
 * const tensors = rangeSafetensors(fileReader); // nothing but the header read yet
 * tensors['model.norm.weight'].bytes; // reads that tensor's range
 */
export function rangeSafetensors(file: RangeReader): Record<string, RawSafetensorsTensor> {
  const n = safetensorsHeaderLength(file.read(0, Math.min(8, file.size)), file.size);
  const { tensors } = safetensorsLayout(file.read(8, n), file.size);
  const out: Record<string, RawSafetensorsTensor> = Object.create(null);
  for (const [name, info] of Object.entries(tensors)) {
    out[name] = {
      dtype: info.dtype,
      shape: info.shape,
      get bytes(): Uint8Array {
        const b = file.read(info.begin, info.end - info.begin);
        if (b.length !== info.end - info.begin)
          throw new SafetensorsError(
            `tensor '${name}': read ${b.length} of its ${info.end - info.begin} bytes: the file changed or is truncated`,
          );
        return b;
      },
    };
  }
  return out;
}
