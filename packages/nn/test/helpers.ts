import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Device, init, setDefaultDevice, type Tensor, tensor } from '@lowrank/tensor';
import { expect } from 'vitest';

/** JSON as the reference file holds it. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

const here = dirname(fileURLToPath(import.meta.url));

/** PyTorch reference data made by test/reference/make_reference.py. */
export const REF = JSON.parse(readFileSync(join(here, 'fixtures', 'reference.json'), 'utf8')) as JsonObject;

export function obj(v: Json | undefined): JsonObject {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v))
    throw new Error('expected an object');
  return v;
}

export function list(v: Json | undefined): Json[] {
  if (!Array.isArray(v)) throw new Error('expected an array');
  return v;
}

export function num(v: Json | undefined): number {
  if (typeof v !== 'number') throw new Error(`expected a number, got ${JSON.stringify(v)}`);
  return v;
}

/** Flat values of a stored tensor. */
export function values(v: Json | undefined): number[] {
  return list(obj(v).data).map((x) => (typeof x === 'boolean' ? Number(x) : num(x)));
}

export function shapeOf(v: Json | undefined): number[] {
  return list(obj(v).shape).map(num);
}

/** A stored tensor as a lowrank tensor (int tensors → int32, bool → bool). */
export function ref(
  v: Json | undefined,
  options: { device?: Device; dtype?: 'float32' | 'int32' | 'bool'; requiresGrad?: boolean } = {},
): Tensor {
  const o = obj(v);
  const data = list(o.data);
  // JSON does not keep int vs float: integer tensors are asked for with `dtype: 'int32'`
  const dtype = options.dtype ?? (typeof data[0] === 'boolean' ? 'bool' : 'float32');
  const shape = shapeOf(o);
  const flat = data.map((x) => (typeof x === 'boolean' ? Number(x) : num(x)));
  const typed =
    dtype === 'float32'
      ? new Float32Array(flat)
      : dtype === 'int32'
        ? new Int32Array(flat)
        : new Uint8Array(flat);
  return tensor(typed, { shape, device: options.device, requiresGrad: options.requiresGrad });
}

/** Asserts |a − e| ≤ atol + rtol·|e| elementwise, naming the worst element. */
export async function expectClose(
  actual: Tensor,
  expected: Json | undefined | readonly number[],
  tol: { rtol?: number; atol?: number } = {},
): Promise<void> {
  const rtol = tol.rtol ?? 1e-5;
  const atol = tol.atol ?? 1e-5;
  const exp = Array.isArray(expected) ? (expected as number[]) : values(expected as Json);
  if (!Array.isArray(expected)) expect([...actual.shape]).toEqual(shapeOf(expected as Json));
  const got = Array.from(await actual.data());
  expect(got.length).toBe(exp.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < got.length; i++) {
    const e = exp[i];
    const a = got[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    expect.fail(`element ${worst}: got ${got[worst]}, expected ${exp[worst]} (rtol ${rtol}, atol ${atol})`);
  }
}

/** Tries to start WebGPU (lavapipe here); the default device stays 'cpu'. Null when it works. */
export async function webgpuUnavailable(): Promise<string | null> {
  return init({ backend: 'webgpu' })
    .then(() => null)
    .catch((e: unknown) => (e instanceof Error ? e.message : String(e)))
    .finally(() => setDefaultDevice('cpu'));
}
