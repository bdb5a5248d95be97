import { type TypedArray, typedArrayFor } from '../dtype.js';
import { lazyStorage, realize } from '../engine/lazy.js';
import { releaseStorage, retainStorage } from '../engine/memory.js';
import { getBackend } from '../engine/registry.js';
import { fmtShape, OpError } from '../errors.js';
import { loadProgram } from '../expr/program.js';
import type { Device } from '../storage.js';
import type { NestedArray, Tensor } from '../tensor.js';
import { wrap } from './util.js';

/** Reads t's values (row-major) into a fresh typed array. */
export async function readData(t: Tensor): Promise<TypedArray> {
  t.assertLive('data');
  // a contiguous view over the whole storage reads directly; anything else is compacted first
  const whole = t.isContiguous() && t.offset === 0 && t.size === t.storage.size;
  if (t.size === 0) return typedArrayFor(t.dtype, 0);
  const src = whole ? t : wrap(lazyStorage('data', t.device, loadProgram(t.lazyView_())), t.shape);
  const storage = src.storage;
  realize(storage);
  retainStorage(storage); // keep the storage alive while the read is in flight, even if t is disposed
  try {
    return await getBackend(t.device).read(storage);
  } finally {
    releaseStorage(storage);
    if (src !== t) src.dispose();
  }
}

export async function toArray(t: Tensor): Promise<NestedArray> {
  const values = await readData(t);
  const isBool = t.dtype === 'bool';
  const at = (i: number): number | boolean => (isBool ? values[i] !== 0 : values[i]);
  if (t.rank === 0) return at(0);
  let i = 0;
  const build = (depth: number): NestedArray[] => {
    const out: NestedArray[] = [];
    for (let j = 0; j < t.shape[depth]; j++) out.push(depth === t.rank - 1 ? at(i++) : build(depth + 1));
    return out;
  };
  return build(0);
}

export async function item(t: Tensor): Promise<number | boolean> {
  if (t.size !== 1)
    throw new OpError('item', `expected a tensor with one element, got shape ${fmtShape(t.shape)}`);
  const v = await readData(t);
  return t.dtype === 'bool' ? v[0] !== 0 : v[0];
}

/** Copies t to another device (resolves to t itself when it is already there). */
export async function toDevice(t: Tensor, device: Device): Promise<Tensor> {
  t.assertLive('to');
  if (t.device === device) return t;
  const target = getBackend(device);
  const values = await readData(t);
  return wrap(target.upload(values, t.dtype), t.shape);
}
