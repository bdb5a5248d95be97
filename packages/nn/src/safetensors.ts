import type { DType, Tensor, TypedArray } from '@lowrank/tensor';
import { entriesOf } from './internal.js';
import type { HostTensor } from './module.js';

/**
 * The safetensors format (https://github.com/huggingface/safetensors), platform-neutral: bytes in,
 * bytes out. A file is an 8-byte little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { str: str } }`, then
 * the tensor data (offsets relative to its start).
 *
 * The reader treats its input as hostile: every field is checked before any allocation that
 * depends on it, and every failure is a `SafetensorsError` saying what was wrong.
 */

/** Element types of the format that the reader accepts. */
export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

const ITEM_BYTES: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Largest rank accepted. */
export const MAX_RANK = 32;

/** Thrown by the safetensors reader and writer; the message says what was wrong and where. */
export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** A tensor as read from a file: converted to a lowrank dtype, with the file's dtype kept. */
export interface SafetensorsTensor extends HostTensor {
  /** The dtype in the file (F16/BF16/F64 become float32; I64/U8/… become int32). */
  readonly sourceDtype: SafetensorsDType;
}

/** What `parseSafetensors` returns. */
export interface ParsedSafetensors {
  /** By name, in file order (a null-prototype object: any name is safe). */
  tensors: Record<string, SafetensorsTensor>;
  /** The header's `__metadata__` strings (e.g. `format: 'pt'`), or {} when absent. */
  metadata: Record<string, string>;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface Entry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

function isSafetensorsDType(v: unknown): v is SafetensorsDType {
  return typeof v === 'string' && Object.hasOwn(ITEM_BYTES, v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses a safetensors file. Throws `SafetensorsError` when the header length is out of bounds,
 * the header is not valid UTF-8 JSON of the right form, a dtype is unknown, a shape disagrees
 * with its byte size, offsets are out of range, overlap or leave gaps, or the file is shorter
 * than declared.
 *
 * @example
 * const { tensors, metadata } = parseSafetensors(bytes);
 * model.loadStateDict(tensors);
 */
export function parseSafetensors(bytes: Uint8Array): ParsedSafetensors {
  const { tensors: raw, metadata } = safetensorsEntries(bytes);
  const tensors: Record<string, SafetensorsTensor> = Object.create(null);
  for (const [name, t] of Object.entries(raw)) tensors[name] = decodeSafetensor(name, t);
  return { tensors, metadata };
}

/** A tensor of a safetensors file before decoding: the file's dtype, the shape and its bytes. */
export interface RawSafetensorsTensor {
  /** The dtype in the file. */
  readonly dtype: SafetensorsDType;
  /** Its shape. */
  readonly shape: number[];
  /** Its little-endian values: a view into the file's bytes (no copy). */
  readonly bytes: Uint8Array;
}

/**
 * `parseSafetensors` without decoding: the same checks of the header and offsets, and each
 * tensor as a view of its bytes in the file, so a loader can convert them one at a time (and
 * keep 16-bit values as they are) without a second copy of the file.
 *
 * @example
 * const { tensors } = safetensorsEntries(bytes);
 * tensors['model.norm.weight'].dtype; // 'BF16'
 * const norm = decodeSafetensor('model.norm.weight', tensors['model.norm.weight']); // float32
 */
export function safetensorsEntries(bytes: Uint8Array): {
  /** By name, in file order (a null-prototype object). */
  tensors: Record<string, RawSafetensorsTensor>;
  /** The header's `__metadata__` strings. */
  metadata: Record<string, string>;
} {
  const n = safetensorsHeaderLength(bytes.subarray(0, 8), bytes.length);
  const { entries, metadata } = headerEntries(bytes.subarray(8, 8 + n), bytes.length);
  const dataStart = 8 + n;
  const tensors: Record<string, RawSafetensorsTensor> = Object.create(null);
  for (const e of entries)
    tensors[e.name] = {
      dtype: e.dtype,
      shape: e.shape,
      bytes: bytes.subarray(dataStart + e.begin, dataStart + e.end),
    };
  return { tensors, metadata };
}

/**
 * The header length N of a safetensors file from its first 8 bytes (`fileSize`: the whole
 * file's length), checked against the limit and the file: a reader of byte ranges reads these
 * 8 bytes, then the N header bytes (`safetensorsLayout`), then each tensor's range.
 *
 * @example
 * const n = safetensorsHeaderLength(first8, size);
 * const layout = safetensorsLayout(bytesAt(8, n), size);
 */
export function safetensorsHeaderLength(first8: Uint8Array, fileSize: number): number {
  if (!LITTLE_ENDIAN) throw new SafetensorsError('big-endian hosts are not supported');
  if (fileSize < 8 || first8.length < 8) {
    throw new SafetensorsError(`file is ${fileSize} bytes, too short for the 8-byte header length`);
  }
  const declared = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`header length ${declared} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  }
  const n = Number(declared);
  if (8 + n > fileSize) {
    throw new SafetensorsError(
      `header length ${n} exceeds the file (${fileSize} bytes): the file is truncated`,
    );
  }
  return n;
}

/** Where one tensor lies in a safetensors file (`safetensorsLayout`). */
export interface SafetensorsTensorInfo {
  /** The dtype in the file. */
  readonly dtype: SafetensorsDType;
  /** Its shape. */
  readonly shape: number[];
  /** Its first byte, from the start of the file. */
  readonly begin: number;
  /** One past its last byte, from the start of the file. */
  readonly end: number;
}

/**
 * The tensors of a safetensors file from its header alone (the N JSON bytes after the 8-byte
 * length), with every check of `safetensorsEntries`, and each tensor's byte range in the file:
 * a loader reads the ranges one at a time and never holds the whole file.
 *
 * @example
 * const layout = safetensorsLayout(headerBytes, fileSize);
 * const w = layout.tensors['model.norm.weight']; // { dtype, shape, begin, end }
 */
export function safetensorsLayout(
  header: Uint8Array,
  fileSize: number,
): {
  /** By name, in file order (a null-prototype object). */
  tensors: Record<string, SafetensorsTensorInfo>;
  /** The header's `__metadata__` strings. */
  metadata: Record<string, string>;
} {
  const { entries, metadata } = headerEntries(header, fileSize);
  const dataStart = 8 + header.length;
  const tensors: Record<string, SafetensorsTensorInfo> = Object.create(null);
  for (const e of entries)
    tensors[e.name] = { dtype: e.dtype, shape: e.shape, begin: dataStart + e.begin, end: dataStart + e.end };
  return { tensors, metadata };
}

/** The checked entries of a header (offsets relative to the data), for a file of `fileSize` bytes. */
function headerEntries(
  headerBytes: Uint8Array,
  fileSize: number,
): { entries: Entry[]; metadata: Record<string, string> } {
  const n = headerBytes.length;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError('header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(header)) throw new SafetensorsError('header must be a JSON object');

  const dataLen = fileSize - 8 - n;
  const metadata: Record<string, string> = Object.create(null);
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isRecord(info)) throw new SafetensorsError('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw new SafetensorsError(`__metadata__.${k} must be a string`);
        metadata[k] = v;
      }
      continue;
    }
    entries.push(checkEntry(name, info, dataLen));
  }

  // offsets: sorted, contiguous from 0 and covering the data exactly (no overlap, no gap)
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin < pos)
      throw new SafetensorsError(`tensor '${e.name}' [${e.begin}, ${e.end}) overlaps the previous tensor`);
    if (e.begin > pos)
      throw new SafetensorsError(`gap in the data before tensor '${e.name}' (bytes ${pos}..${e.begin})`);
    pos = e.end;
  }
  if (pos !== dataLen) {
    throw new SafetensorsError(`the tensors cover ${pos} bytes of data but the file holds ${dataLen}`);
  }

  return { entries, metadata };
}

/**
 * One tensor of `safetensorsEntries` converted as `parseSafetensors` converts it (F16/BF16/F64
 * to float32, integers to int32, BOOL to bool); `name` is for error messages.
 *
 * @example
 * const { tensors } = safetensorsEntries(bytes);
 * decodeSafetensor('wte', tensors.wte).data; // Float32Array
 */
export function decodeSafetensor(name: string, t: RawSafetensorsTensor): SafetensorsTensor {
  const e: Entry = { name, dtype: t.dtype, shape: t.shape, begin: 0, end: t.bytes.length };
  return { ...decode(e, t.bytes), shape: t.shape, sourceDtype: t.dtype };
}

function checkEntry(name: string, info: unknown, dataLen: number): Entry {
  const where = `tensor '${name}'`;
  if (!isRecord(info))
    throw new SafetensorsError(`${where}: expected an object with dtype, shape, data_offsets`);
  const { dtype, shape, data_offsets: offsets } = info;
  if (!isSafetensorsDType(dtype)) {
    throw new SafetensorsError(
      `${where}: unsupported dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(ITEM_BYTES).join(', ')})`,
    );
  }
  if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every(isIndex)) {
    throw new SafetensorsError(
      `${where}: shape must be an array of at most ${MAX_RANK} non-negative integers`,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    throw new SafetensorsError(`${where}: data_offsets must be two non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] are reversed`);
  if (end > dataLen) {
    throw new SafetensorsError(
      `${where}: data_offsets [${begin}, ${end}] exceed the ${dataLen} data bytes in the file`,
    );
  }
  // element count without overflow: stop as soon as it cannot fit the declared bytes
  const item = ITEM_BYTES[dtype];
  const size = end - begin;
  const dims = shape as number[];
  let bytesNeeded = dims.includes(0) ? 0 : item;
  let partial = false;
  for (const d of dims) {
    if (bytesNeeded > size) {
      partial = true;
      break;
    }
    bytesNeeded *= d;
  }
  if (bytesNeeded !== size) {
    const need = partial ? `more than ${size}` : String(bytesNeeded);
    throw new SafetensorsError(
      `${where}: shape [${dims.join(',')}] of ${dtype} needs ${need} bytes, data_offsets give ${size}`,
    );
  }
  return { name, dtype, shape: [...(shape as number[])], begin, end };
}

/** A copy of `raw` in a fresh (aligned) buffer. */
function aligned(raw: Uint8Array): ArrayBuffer {
  const buf = new ArrayBuffer(raw.length);
  new Uint8Array(buf).set(raw);
  return buf;
}

function decode(e: Entry, raw: Uint8Array): { dtype: DType; data: TypedArray } {
  const int32 = (values: ArrayLike<number | bigint>): { dtype: DType; data: TypedArray } => {
    const out = new Int32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = Number(values[i]);
      if (v < -2147483648 || v > 2147483647) {
        throw new SafetensorsError(
          `tensor '${e.name}': ${e.dtype} value ${values[i]} at index ${i} does not fit int32`,
        );
      }
      out[i] = v;
    }
    return { dtype: 'int32', data: out };
  };
  switch (e.dtype) {
    case 'F32':
      return { dtype: 'float32', data: new Float32Array(aligned(raw)) };
    case 'F64':
      return { dtype: 'float32', data: Float32Array.from(new Float64Array(aligned(raw))) };
    case 'F16': {
      const h = new Uint16Array(aligned(raw));
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]);
      return { dtype: 'float32', data: out };
    }
    case 'BF16': {
      const h = new Uint16Array(aligned(raw));
      const bits = new Uint32Array(h.length);
      for (let i = 0; i < h.length; i++) bits[i] = h[i] << 16;
      return { dtype: 'float32', data: new Float32Array(bits.buffer) };
    }
    case 'I32':
      return { dtype: 'int32', data: new Int32Array(aligned(raw)) };
    case 'I16':
      return { dtype: 'int32', data: Int32Array.from(new Int16Array(aligned(raw))) };
    case 'I8':
      return { dtype: 'int32', data: Int32Array.from(new Int8Array(aligned(raw))) };
    case 'U8':
      return { dtype: 'int32', data: Int32Array.from(raw) };
    case 'U16':
      return { dtype: 'int32', data: Int32Array.from(new Uint16Array(aligned(raw))) };
    case 'U32':
      return int32(new Uint32Array(aligned(raw)));
    case 'I64':
      return int32(new BigInt64Array(aligned(raw)));
    case 'U64':
      return int32(new BigUint64Array(aligned(raw)));
    case 'BOOL':
      return { dtype: 'bool', data: Uint8Array.from(raw, (b) => (b ? 1 : 0)) };
  }
}

/**
 * IEEE half-precision bits → number.
 *
 * @example
 * halfToFloat(0x3c00); // 1
 * halfToFloat(0xc000); // -2
 */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

const WRITE_DTYPE: Record<DType, SafetensorsDType> = { float32: 'F32', int32: 'I32', bool: 'BOOL' };

/**
 * Serialises host tensors (float32 → F32, int32 → I32, bool → BOOL) in the given order, with the
 * header padded to a multiple of 8 bytes.
 *
 * @example
 * const bytes = serializeSafetensors({ w: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } });
 * parseSafetensors(bytes).tensors.w.shape; // [2]
 */
export function serializeSafetensors(
  tensors: Readonly<Record<string, HostTensor>> | ReadonlyMap<string, HostTensor>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const list = entriesOf<HostTensor>(tensors);
  const header: Record<string, unknown> = {};
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new SafetensorsError(`metadata '${k}' must be a string`);
    meta[k] = v;
  }
  if (Object.keys(meta).length) header.__metadata__ = meta;
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new SafetensorsError("'__metadata__' cannot name a tensor");
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new SafetensorsError(
        `tensor '${name}': shape [${t.shape.join(',')}] needs ${count} values, got ${t.data.length}`,
      );
    }
    const dtype = WRITE_DTYPE[t.dtype];
    const size = count * ITEM_BYTES[dtype];
    Object.defineProperty(header, name, {
      value: { dtype, shape: [...t.shape], data_offsets: [offset, offset + size] },
      enumerable: true,
    });
    offset += size;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const [, t] of list) {
    const b = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}

/**
 * Reads tensors back to the host (for serialisation).
 *
 * @example
 * const host = await toHost(model.stateDict()); // Map name → { dtype, shape, data }
 */
export async function toHost(
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  const list = entriesOf<Tensor>(tensors);
  for (const [name, t] of list) out.set(name, { dtype: t.dtype, shape: [...t.shape], data: await t.data() });
  return out;
}

/**
 * A state dict (tensors on any device) as safetensors bytes.
 *
 * @example
 * const bytes = await stateDictToSafetensors(model.stateDict(), { format: 'pt' });
 */
export async function stateDictToSafetensors(
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<Uint8Array> {
  return serializeSafetensors(await toHost(tensors), metadata);
}
