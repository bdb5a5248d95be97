import { f16Bits, type HostTensor } from 'lowrank';

/**
 * Host tensors (`toHost(model.stateDict())`) as safetensors with every float32 tensor stored as F16 (rounded to nearest, ties
 * to even): the shipped checkpoint in half the bytes. `serializeSafetensors` writes F32/I32/BOOL
 * only, and loaders (lowrank's `AutoModelForCausalLM`, transformers) read F16 as they read F32.
 * A value beyond f16's range (|x| > 65504) throws instead of becoming Infinity.
 *
 * @example
 * writeFileSync('model.safetensors', f16Safetensors(await lr.toHost(model.stateDict()), { format: 'pt' }));
 */
export function f16Safetensors(
  host: ReadonlyMap<string, HostTensor>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { ...metadata } };
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of host) {
    if (t.dtype !== 'float32') throw new Error(`f16Safetensors: '${name}' is ${t.dtype}, expected float32`);
    const bits = new Uint16Array(t.data.length);
    for (let i = 0; i < bits.length; i++) {
      const h = f16Bits(t.data[i] as number);
      if ((h & 0x7fff) === 0x7c00)
        throw new Error(`f16Safetensors: '${name}'[${i}] = ${t.data[i]} is beyond f16's range`);
      bits[i] = h;
    }
    header[name] = { dtype: 'F16', shape: [...t.shape], data_offsets: [offset, offset + bits.byteLength] };
    parts.push(new Uint8Array(bits.buffer));
    offset += bits.byteLength;
  }
  const json = JSON.stringify(header);
  const headerBytes = new TextEncoder().encode(json.padEnd(Math.ceil(json.length / 8) * 8, ' '));
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
