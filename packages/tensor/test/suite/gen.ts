/**
 * Random inputs for the op suite: shapes (0- and 1-sized dims included) and tensors laid out
 * contiguously or as non-contiguous views (permuted, strided slices, offsets, broadcast
 * expansions), each paired with its reference values.
 */
import fc from 'fast-check';
import type { Device, DType, Tensor } from '../../src/index.js';
import * as lr from '../../src/index.js';
import { build, numel, prng, type Ref, ravel, unravel } from './reference.js';

export type Layout = 'contiguous' | 'permuted' | 'strided' | 'offset' | 'expanded';
export const LAYOUTS: readonly Layout[] = ['contiguous', 'permuted', 'strided', 'offset', 'expanded'];

/** A shape of rank minRank..maxRank with dims 0..maxDim (small: the suite must run on lavapipe). */
export function arbShape(minRank = 0, maxRank = 4, maxDim = 4, minDim = 0): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: minDim, max: maxDim }), { minLength: minRank, maxLength: maxRank });
}

export type Kind = 'float' | 'int' | 'bool' | 'positive' | 'unit';

/**
 * Values of a kind, as exact float32 numbers: 'float' is a multiple of 1/8 in [-4, 4] (ties and
 * exact sums are common), 'positive' is in [0.125, 4], 'unit' a uniform float in (−1, 1),
 * 'int' an integer in [-5, 5], 'bool' 0/1.
 */
export function values(kind: Kind, n: number, seed: number): number[] {
  const r = prng(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const u = r();
    if (kind === 'float') out.push(Math.round((u * 8 - 4) * 8) / 8);
    else if (kind === 'positive') out.push(Math.round((0.125 + u * 3.875) * 8) / 8);
    else if (kind === 'unit') out.push(Math.fround(u * 2 - 1));
    else if (kind === 'int') out.push(Math.floor(u * 11) - 5);
    else out.push(u < 0.5 ? 0 : 1);
  }
  return out;
}

export function dtypeOf(kind: Kind): DType {
  return kind === 'int' ? 'int32' : kind === 'bool' ? 'bool' : 'float32';
}

/** A typed array of `dtype` holding `data`. */
export function typed(data: readonly number[], dtype: DType): Float32Array | Int32Array | Uint8Array {
  if (dtype === 'float32') return Float32Array.from(data);
  if (dtype === 'int32') return Int32Array.from(data);
  return Uint8Array.from(data);
}

/** An input tensor: its reference values, and how to build it on a device with a given layout. */
export interface Input {
  ref: Ref;
  layout: Layout;
  dtype: DType;
  /** Creates the tensor (the caller disposes it). */
  make(device: Device): Tensor;
}

export function upload(ref: Ref, dtype: DType, device: Device): Tensor {
  return lr.tensor(typed(ref.data, dtype), { shape: ref.shape, device, dtype });
}

/**
 * Builds `ref` on `device` as a view with the given layout. The intermediate base tensor is
 * disposed right away: the view keeps the storage alive.
 */
export function makeLayout(ref: Ref, dtype: DType, layout: Layout, device: Device, seed: number): Tensor {
  const rank = ref.shape.length;
  const r = prng(seed ^ 0x5bd1e995);
  if (layout === 'contiguous' || rank === 0) return upload(ref, dtype, device);
  if (layout === 'permuted') {
    // a random permutation `perm`; the base holds the values at physical index idx' with
    // idx'[j] = idx[perm[j]], and base.permute(inverse) reads them back in logical order
    const perm = [...Array(rank).keys()];
    for (let i = rank - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const pshape = perm.map((p) => ref.shape[p]);
    const base = build(pshape, (pidx) => {
      const idx = new Array<number>(rank);
      for (let j = 0; j < rank; j++) idx[perm[j]] = pidx[j];
      return ref.data[ravel(idx, ref.shape)];
    });
    const inv = new Array<number>(rank);
    for (let j = 0; j < rank; j++) inv[perm[j]] = j;
    const t = upload(base, dtype, device);
    const v = t.permute(inv);
    t.dispose();
    return v;
  }
  if (layout === 'strided' || layout === 'offset') {
    // values at physical positions 1 + 2·i (strided) or 1 + i (offset) in a padded base filled
    // with a sentinel, then sliced back out
    const step = layout === 'strided' ? 2 : 1;
    const pshape = ref.shape.map((d) => d * step + 2);
    const sentinel = dtype === 'bool' ? 1 : 77;
    const base = build(pshape, (pidx) => {
      const inside = pidx.every((p, d) => p >= 1 && (p - 1) % step === 0 && (p - 1) / step < ref.shape[d]);
      return inside
        ? ref.data[
            ravel(
              pidx.map((p) => (p - 1) / step),
              ref.shape,
            )
          ]
        : sentinel;
    });
    const t = upload(base, dtype, device);
    let v = t;
    for (let d = 0; d < rank; d++) {
      const next = v.slice(d, 1, 1 + ref.shape[d] * step, step);
      if (v !== t) v.dispose();
      v = next;
    }
    t.dispose();
    return v;
  }
  // expanded: only meaningful when `ref` is constant along some dims; makeExpandedRef builds such refs
  return upload(ref, dtype, device);
}

/**
 * An input of `shape`: random values of `kind` and a random layout. For the 'expanded' layout the
 * values are constant along randomly chosen dims and the tensor is a broadcast view (stride 0).
 */
export function arbInputOf(
  shape: fc.Arbitrary<number[]>,
  kind: Kind,
  layouts = LAYOUTS,
): fc.Arbitrary<Input> {
  return fc
    .tuple(shape, fc.integer({ min: 0, max: 0x7fffffff }), fc.constantFrom(...layouts))
    .map(([s, seed, layout]) => inputOf(s, kind, layout, seed));
}

export function arbInput(kind: Kind = 'float', maxRank = 4, maxDim = 4): fc.Arbitrary<Input> {
  return arbInputOf(arbShape(0, maxRank, maxDim), kind);
}

export function inputOf(shape: readonly number[], kind: Kind, layout: Layout, seed: number): Input {
  const dtype = dtypeOf(kind);
  if (layout === 'expanded') {
    const r = prng(seed ^ 0x1234567);
    // collapse some dims to 1 in the base, then expand back
    const baseShape = shape.map((d) => (r() < 0.5 ? 1 : d));
    const base: Ref = { shape: baseShape, data: values(kind, numel(baseShape), seed) };
    const ref = build(
      shape,
      (idx) =>
        base.data[
          ravel(
            idx.map((v, d) => (baseShape[d] === 1 ? 0 : v)),
            baseShape,
          )
        ],
    );
    return {
      ref,
      layout,
      dtype,
      make: (device) => {
        const t = upload(base, dtype, device);
        const v = t.expand(shape);
        t.dispose();
        return v;
      },
    };
  }
  const ref: Ref = { shape: [...shape], data: values(kind, numel(shape), seed) };
  return { ref, layout, dtype, make: (device) => makeLayout(ref, dtype, layout, device, seed) };
}

/** A pair of shapes that broadcast together (one side may lose leading dims and get 1s). */
export function arbBroadcastShapes(maxRank = 4, maxDim = 4): fc.Arbitrary<[number[], number[]]> {
  return fc
    .tuple(
      arbShape(0, maxRank, maxDim),
      fc.array(fc.boolean(), { minLength: maxRank, maxLength: maxRank }),
      fc.array(fc.boolean(), { minLength: maxRank, maxLength: maxRank }),
      fc.nat(maxRank),
      fc.nat(maxRank),
    )
    .map(([out, ma, mb, da, db]) => {
      const a = out.slice(Math.min(da, out.length)).map((d, i) => (ma[i] ? 1 : d));
      const b = out.slice(Math.min(db, out.length)).map((d, i) => (mb[i] ? 1 : d));
      return [a, b];
    });
}

/** Reads a tensor into a reference (row-major values as JS numbers). */
export async function read(t: Tensor): Promise<Ref> {
  return { shape: [...t.shape], data: Array.from(await t.data()) };
}

/** Absolute/relative tolerance: |got − want| ≤ atol + rtol·|want|. */
export interface Tol {
  rtol: number;
  atol: number;
}
export const EXACT: Tol = { rtol: 0, atol: 0 };

/** Throws a descriptive error when `got` differs from `want` in shape or beyond `tol`. */
export function assertClose(got: Ref, want: Ref, tol: Tol, what = ''): void {
  const label = what ? `${what}: ` : '';
  if (got.shape.length !== want.shape.length || got.shape.some((d, i) => d !== want.shape[i])) {
    throw new Error(`${label}shape [${got.shape}] differs from the reference [${want.shape}]`);
  }
  for (let i = 0; i < want.data.length; i++) {
    const g = got.data[i];
    const w = want.data[i];
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    if (g === w) continue; // also equal infinities
    if (!(Math.abs(g - w) <= tol.atol + tol.rtol * Math.abs(w))) {
      throw new Error(
        `${label}element ${i} (index [${unravel(i, want.shape)}]) is ${g}, the reference says ${w} (tolerance ${JSON.stringify(tol)})`,
      );
    }
  }
}

/** Rounds reference values to float32 (what a float32 result can represent at best). */
export function f32(r: Ref): Ref {
  return { shape: r.shape, data: r.data.map((x) => Math.fround(x)) };
}

/** Collects tensors made in a test so it can dispose them all at the end. */
export class Bag {
  private items: Tensor[] = [];
  add<T extends Tensor | Tensor[]>(t: T): T {
    if (Array.isArray(t)) this.items.push(...t);
    else this.items.push(t);
    return t;
  }
  dispose(): void {
    for (const t of this.items) t.dispose();
    this.items = [];
  }
}
