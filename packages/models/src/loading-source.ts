import {
  type RawSafetensorsTensor,
  type SafetensorsDType,
  SafetensorsError,
  safetensorsHeaderLength,
  safetensorsLayout,
} from '@lowrank/nn';

/**
 * Safetensors files read by byte range (issue #17 item 2: a load never holds the file): the
 * 8-byte length, the header, then each tensor's range when the loader reaches it. Browser-safe;
 * `@lowrank/models/node` opens files this way. A browser reads a `Blob` / `File` range
 * asynchronously (`blob.slice(a, b).arrayBuffer()`): `AsyncRangeReader` and `blobRangeReader`.
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
  return (
    typeof v === 'object' &&
    v !== null &&
    !(v instanceof Uint8Array) &&
    'read' in v &&
    'size' in v &&
    !isAsyncRangeReader(v)
  );
}

/**
 * Random access to one file's bytes, read asynchronously (a browser's `Blob` / `File`, an OPFS
 * file's `getFile()`): `AutoModelForCausalLM.fromFiles` reads the header, then each tensor's
 * range when the load reaches it, one at a time, so the load never holds the file.
 * `async: true` tells it from a synchronous `RangeReader` (whose `read` has the same name).
 *
 * @example
 * // a reader over a Blob (what blobRangeReader does)
 * const reader: AsyncRangeReader = {
 *   async: true,
 *   size: blob.size,
 *   read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
 * };
 */
export interface AsyncRangeReader {
  /** Marks the reader as asynchronous. */
  readonly async: true;
  /** The file's length in bytes. */
  readonly size: number;
  /** `length` bytes from `offset` (fewer when the file ends first). */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the file; called once the load is done or failed. */
  close?(): void;
}

/**
 * Whether `v` is an `AsyncRangeReader`.
 *
 * @example
 * isAsyncRangeReader(blobRangeReader(new Blob([]))); // true
 * isAsyncRangeReader(bytesRangeReader(new Uint8Array(8))); // false
 */
export function isAsyncRangeReader(v: unknown): v is AsyncRangeReader {
  return (
    typeof v === 'object' &&
    v !== null &&
    (v as { async?: unknown }).async === true &&
    typeof (v as { read?: unknown }).read === 'function' &&
    typeof (v as { size?: unknown }).size === 'number'
  );
}

/**
 * An `AsyncRangeReader` over a `Blob` (a `File` from a folder picker, an OPFS file's
 * `getFile()`): each read is `blob.slice(offset, offset + length).arrayBuffer()`, so only that
 * range is in memory. Its `size` is the blob's when the reader is made: a file that changes
 * afterwards reads short, and the load says which tensor.
 *
 * @example
 * const read = async (name: string) => {
 *   const f = files.get(name); // File objects of <input type=file webkitdirectory>
 *   if (!f) return null;
 *   return name.endsWith('.safetensors') ? blobRangeReader(f) : new Uint8Array(await f.arrayBuffer());
 * };
 * const model = await AutoModelForCausalLM.fromFiles(read);
 */
export function blobRangeReader(blob: Blob): AsyncRangeReader {
  return {
    async: true,
    size: blob.size,
    read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
  };
}

/**
 * A tensor of a safetensors file whose bytes are read asynchronously when asked for (`asyncRangeSafetensors`).
 *
 * @example
 * const t: AsyncRawTensor = (await asyncRangeSafetensors(blobRangeReader(file)))['lm_head.weight'];
 * t.shape; // from the header, nothing read yet
 * const bytes = await t.readBytes();
 */
export interface AsyncRawTensor {
  /** The dtype in the file. */
  readonly dtype: SafetensorsDType;
  /** Its shape. */
  readonly shape: number[];
  /** Reads its range from the file (a fresh read each call). */
  readBytes(): Promise<Uint8Array>;
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
        return checkedRange(name, info, file.read(info.begin, info.end - info.begin));
      },
    };
  }
  return out;
}

/**
 * `rangeSafetensors` for an `AsyncRangeReader`: the header is read (and checked) now; each
 * tensor's `readBytes()` reads its range when the loader reaches it, so a load holds one
 * tensor's bytes at a time. A short read (the file changed or is truncated) or a failed one is
 * refused naming the tensor.
 *
 * @example
 * const tensors = await asyncRangeSafetensors(blobRangeReader(file)); // only the header read
 * const bytes = await tensors['model.norm.weight'].readBytes(); // that tensor's range
 */
export async function asyncRangeSafetensors(file: AsyncRangeReader): Promise<Record<string, AsyncRawTensor>> {
  const n = safetensorsHeaderLength(await file.read(0, Math.min(8, file.size)), file.size);
  const { tensors } = safetensorsLayout(await file.read(8, n), file.size);
  const out: Record<string, AsyncRawTensor> = Object.create(null);
  for (const [name, info] of Object.entries(tensors)) {
    out[name] = {
      dtype: info.dtype,
      shape: info.shape,
      readBytes: async () => {
        let b: Uint8Array;
        try {
          b = await file.read(info.begin, info.end - info.begin);
        } catch (e) {
          throw new SafetensorsError(
            `tensor '${name}': reading bytes ${info.begin}–${info.end} failed (${(e as Error).message}): the file changed or is gone`,
          );
        }
        return checkedRange(name, info, b);
      },
    };
  }
  return out;
}

/** The range read for tensor `name`, refused when it is not the tensor's length. */
function checkedRange(name: string, info: { begin: number; end: number }, b: Uint8Array): Uint8Array {
  if (b.length !== info.end - info.begin)
    throw new SafetensorsError(
      `tensor '${name}': read ${b.length} of its ${info.end - info.begin} bytes: the file changed or is truncated`,
    );
  return b;
}
