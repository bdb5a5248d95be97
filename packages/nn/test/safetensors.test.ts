import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  halfToFloat,
  Linear,
  MAX_HEADER_BYTES,
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  stateDictToSafetensors,
} from '@lowrank/nn';
import { loadSafetensors, saveSafetensors, writeFileAtomic } from '@lowrank/nn/node';
import { tensor } from '@lowrank/tensor';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

/** Builds a file from a header object and raw data bytes (for hand-made and broken files). */
function file(header: unknown, data: Uint8Array = new Uint8Array(0), declared?: bigint): Uint8Array {
  const json =
    header instanceof Uint8Array
      ? header
      : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

const SAMPLE = serializeSafetensors(
  {
    'a.weight': { dtype: 'float32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-8, -7]) },
    'a.ids': { dtype: 'int32', shape: [3], data: new Int32Array([1, -5, 2147483647]) },
    mask: { dtype: 'bool', shape: [2], data: new Uint8Array([1, 0]) },
    empty: { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) },
  },
  { format: 'pt', note: 'héllo' },
);

describe('safetensors codec', () => {
  it('round-trips float32, int32, bool and empty tensors with metadata; header padded to 8 bytes', () => {
    const n = Number(new DataView(SAMPLE.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const { tensors, metadata } = parseSafetensors(SAMPLE);
    expect(metadata).toEqual({ format: 'pt', note: 'héllo' });
    expect(Object.keys(tensors)).toEqual(['a.weight', 'a.ids', 'mask', 'empty']);
    expect(tensors['a.weight'].shape).toEqual([2, 3]);
    expect(Array.from(tensors['a.weight'].data)).toEqual(
      Array.from(new Float32Array([1, -2, 3.5, 0, 1e-8, -7])),
    );
    expect(tensors['a.ids']).toMatchObject({ dtype: 'int32', sourceDtype: 'I32' });
    expect(Array.from(tensors['a.ids'].data)).toEqual([1, -5, 2147483647]);
    expect(tensors.mask).toMatchObject({ dtype: 'bool', shape: [2] });
    expect(Array.from(tensors.mask.data)).toEqual([1, 0]);
    expect(tensors.empty.shape).toEqual([0, 4]);
  });

  it('reads a file laid out as the reference writer does (header JSON as written by Python)', () => {
    // what `safetensors.torch.save_file({"w": torch.tensor([[1., 2.]])}, ...)` writes
    const f = file(
      '{"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}   ',
      bytesOf(new Float32Array([1, 2])),
    );
    expect(Array.from(parseSafetensors(f).tensors.w.data)).toEqual([1, 2]);
  });

  it('converts F16, BF16, F64 to float32 and I64, U8, I8, I16, U16, U32 to int32', () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000]); // 1, −2, 65504, 2^−24, inf, −0
    const bf16 = new Uint16Array([0x3f80, 0xc0a0, 0x7f80]); // 1, −5, inf
    const i64 = new BigInt64Array([-3n, 2147483647n, -2147483648n]);
    const parts: [string, string, number[], Uint8Array][] = [
      ['h', 'F16', [6], bytesOf(f16)],
      ['b', 'BF16', [3], bytesOf(bf16)],
      ['d', 'F64', [2], bytesOf(new Float64Array([0.1, -1e300]))],
      ['l', 'I64', [3], bytesOf(i64)],
      ['u', 'U8', [2], new Uint8Array([0, 255])],
      ['s', 'I8', [2], bytesOf(new Int8Array([-128, 127]))],
      ['t', 'I16', [1], bytesOf(new Int16Array([-300]))],
      ['v', 'U16', [1], bytesOf(new Uint16Array([65535]))],
      ['w', 'U32', [1], bytesOf(new Uint32Array([7]))],
    ];
    const header: Record<string, unknown> = {};
    let off = 0;
    for (const [name, dtype, shape, raw] of parts) {
      header[name] = { dtype, shape, data_offsets: [off, off + raw.length] };
      off += raw.length;
    }
    const data = new Uint8Array(off);
    off = 0;
    for (const [, , , raw] of parts) {
      data.set(raw, off);
      off += raw.length;
    }
    const { tensors } = parseSafetensors(file(header, data));
    expect(Array.from(tensors.h.data)).toEqual([1, -2, 65504, 2 ** -24, Number.POSITIVE_INFINITY, -0]);
    expect(tensors.h).toMatchObject({ dtype: 'float32', sourceDtype: 'F16' });
    expect(Array.from(tensors.b.data)).toEqual([1, -5, Number.POSITIVE_INFINITY]);
    expect(Array.from(tensors.d.data)).toEqual([Math.fround(0.1), Number.NEGATIVE_INFINITY]);
    expect(Array.from(tensors.l.data)).toEqual([-3, 2147483647, -2147483648]);
    expect(tensors.l.dtype).toBe('int32');
    expect(Array.from(tensors.u.data)).toEqual([0, 255]);
    expect(Array.from(tensors.s.data)).toEqual([-128, 127]);
    expect(Array.from(tensors.t.data)).toEqual([-300]);
    expect(Array.from(tensors.v.data)).toEqual([65535]);
    expect(Array.from(tensors.w.data)).toEqual([7]);
    expect(Number.isNaN(halfToFloat(0x7e00))).toBe(true);
    expect(halfToFloat(0x0400)).toBe(2 ** -14);
  });

  const BAD: [string, Uint8Array, RegExp][] = [
    ['shorter than 8 bytes', new Uint8Array(5), /too short for the 8-byte header length/],
    [
      'a huge header length',
      file('{}', new Uint8Array(0), 2n ** 63n),
      /exceeds the limit of 100000000 bytes/,
    ],
    [
      'a header past the end',
      file('{}', new Uint8Array(0), 50n),
      /header length 50 exceeds the file \(10 bytes\)/,
    ],
    ['invalid UTF-8', file(new Uint8Array([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/],
    ['invalid JSON', file('{"a": [1,', new Uint8Array(0)), /header is not valid JSON/],
    ['a JSON array', file('[1, 2]'), /header must be a JSON object/],
    [
      'an unknown dtype',
      file({ a: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
      /unsupported dtype "F8"/,
    ],
    [
      'a negative dim',
      file({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /shape must be an array/,
    ],
    [
      'a fractional offset',
      file({ a: { dtype: 'U8', shape: [1], data_offsets: [0, 0.5] } }, new Uint8Array(1)),
      /data_offsets must be two/,
    ],
    [
      'reversed offsets',
      file({ a: { dtype: 'U8', shape: [0], data_offsets: [1, 0] } }, new Uint8Array(1)),
      /reversed/,
    ],
    [
      'a shape/size mismatch',
      file({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /needs 12 bytes, data_offsets give 8/,
    ],
    [
      'a shape whose size overflows',
      file(
        { a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 2 ** 40], data_offsets: [0, 8] } },
        new Uint8Array(8),
      ),
      /needs more than 8 bytes/,
    ],
    [
      'offsets past the data',
      file({ a: { dtype: 'U8', shape: [9], data_offsets: [0, 9] } }, new Uint8Array(8)),
      /exceed the 8 data bytes/,
    ],
    [
      'overlapping tensors',
      file(
        {
          a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
          b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] },
        },
        new Uint8Array(6),
      ),
      /'b' \[2, 6\) overlaps the previous tensor/,
    ],
    [
      'a gap',
      file({ a: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, new Uint8Array(4)),
      /gap in the data before tensor 'a'/,
    ],
    [
      'trailing bytes',
      file({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(4)),
      /cover 2 bytes of data but the file holds 4/,
    ],
    ['non-string metadata', file({ __metadata__: { a: 1 } }), /__metadata__\.a must be a string/],
    [
      'an I64 value beyond int32',
      file(
        { a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } },
        bytesOf(new BigInt64Array([2n ** 40n])),
      ),
      /does not fit int32/,
    ],
  ];
  for (const [what, bytes, message] of BAD) {
    it(`rejects ${what} with a clear SafetensorsError`, () => {
      let err: unknown;
      try {
        parseSafetensors(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toMatch(/^safetensors: /);
      expect((err as Error).message).toMatch(message);
    });
  }

  it('a file shorter than declared (truncated data) is rejected', () => {
    expect(() => parseSafetensors(SAMPLE.subarray(0, SAMPLE.length - 3))).toThrow(
      /exceed the \d+ data bytes|cover/,
    );
    expect(MAX_HEADER_BYTES).toBe(100_000_000);
  });

  it('fuzz: truncations, bit flips, random header lengths and random bytes give a result or a SafetensorsError, quickly', () => {
    const check = (bytes: Uint8Array): void => {
      const t0 = performance.now();
      try {
        const r = parseSafetensors(bytes);
        // whatever parses is self-consistent
        for (const t of Object.values(r.tensors))
          expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw e;
      }
      expect(performance.now() - t0).toBeLessThan(500);
    };
    fc.assert(
      fc.property(fc.nat({ max: SAMPLE.length }), (n) => check(SAMPLE.slice(0, n))),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.nat({ max: SAMPLE.length * 8 - 1 }), { minLength: 1, maxLength: 4 }),
        (bits) => {
          const b = SAMPLE.slice();
          for (const bit of bits) b[bit >> 3] ^= 1 << (bit & 7);
          check(b);
        },
      ),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (n) => {
        const b = SAMPLE.slice();
        new DataView(b.buffer).setBigUint64(0, n, true);
        check(b);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => check(b)),
      { numRuns: 300 },
    );
    // random headers of the right form with hostile numbers
    const entry = fc.record({
      dtype: fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'X'),
      shape: fc.array(
        fc.oneof(fc.nat({ max: 4 }), fc.constant(2 ** 53), fc.integer({ min: -2, max: 2 ** 31 })),
        {
          maxLength: 4,
        },
      ),
      data_offsets: fc.tuple(
        fc.integer({ min: -1, max: 40 }),
        fc.oneof(fc.integer({ min: -1, max: 40 }), fc.constant(2 ** 60)),
      ),
    });
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 5 }), entry, { maxKeys: 4 }),
        fc.nat({ max: 48 }),
        (h, n) => check(file(h, new Uint8Array(n))),
      ),
      { numRuns: 500 },
    );
  });

  it('stateDictToSafetensors → parse → loadStateDict restores a model', async () => {
    const a = new Linear(3, 2);
    const b = new Linear(3, 2);
    b.loadStateDict(parseSafetensors(await stateDictToSafetensors(a.stateDict())).tensors);
    expect(Array.from(await b.weight.data())).toEqual(Array.from(await a.weight.data()));
    expect(Array.from(await b.bias!.data())).toEqual(Array.from(await a.bias!.data()));
  });
});

describe('@lowrank/nn/node file helpers', () => {
  it('saveSafetensors / loadSafetensors round-trip, atomically (no temp files left)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nn-st-'));
    const path = join(dir, 'model.safetensors');
    const m = new Linear(4, 3);
    await saveSafetensors(
      path,
      { ...m.stateDict(), ids: tensor([1, 2], { dtype: 'int32' }) },
      { format: 'pt' },
    );
    const { tensors, metadata } = await loadSafetensors(path);
    expect(metadata.format).toBe('pt');
    expect(Array.from(tensors.weight.data)).toEqual(Array.from(await m.weight.data()));
    expect(Array.from(tensors.ids.data)).toEqual([1, 2]);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('a failed write leaves the previous file intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nn-st-'));
    const path = join(dir, 'ckpt.safetensors');
    writeFileSync(path, SAMPLE);
    await expect(
      saveSafetensors(path, { bad: { dtype: 'float32', shape: [3], data: new Float32Array(2) } }),
    ).rejects.toThrow(/needs 3 values, got 2/);
    // writing into a missing directory fails before anything is renamed
    await expect(writeFileAtomic(join(dir, 'missing', 'x'), new Uint8Array(4))).rejects.toThrow();
    expect(Buffer.compare(readFileSync(path), SAMPLE)).toBe(0);
    expect(readdirSync(dir)).toEqual(['ckpt.safetensors']);
  });
});
