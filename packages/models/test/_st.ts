import { readFileSync } from 'node:fs';
export function readSt(
  path: string,
): Map<string, { dtype: 'float32' | 'int32'; shape: number[]; data: Float32Array | Int32Array }> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = new Map();
  for (const [k, v] of Object.entries<{ dtype: string; shape: number[]; data_offsets: [number, number] }>(
    header,
  )) {
    if (k === '__metadata__') continue;
    const bytes = buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]);
    const copy = new Uint8Array(bytes).buffer;
    out.set(k, {
      dtype: v.dtype === 'F32' ? 'float32' : 'int32',
      shape: v.shape,
      data: v.dtype === 'F32' ? new Float32Array(copy) : new Int32Array(copy),
    });
  }
  return out;
}
