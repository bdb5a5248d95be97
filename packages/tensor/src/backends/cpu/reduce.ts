import type { KernelTable } from '../../backend.js';
import { typedArrayFor } from '../../dtype.js';
import { storageOf } from './storage.js';
import { arrayOf, offsetsOf } from './strided.js';

/** Reduces the `inner` trailing elements of each of `outer` rows (x is [...kept, ...reduced]). */
export const reduce: KernelTable['reduce'] = (op, x, outer, inner, outDtype) => {
  const out = typedArrayFor(outDtype, outer);
  const src = arrayOf(x);
  const offs = offsetsOf(x);
  const base = x.offset;
  const at = offs ? (i: number) => src[offs[i]] : (i: number) => src[base + i];
  for (let o = 0; o < outer; o++) {
    const start = o * inner;
    switch (op) {
      case 'sum': {
        // pairwise-free but compensated (Kahan) summation keeps float32 results close to float64
        let s = 0;
        let c = 0;
        for (let j = 0; j < inner; j++) {
          const y = at(start + j) - c;
          const t = s + y;
          c = t - s - y;
          s = t;
        }
        out[o] = s;
        break;
      }
      case 'prod': {
        let p = 1;
        for (let j = 0; j < inner; j++) p *= at(start + j);
        out[o] = p;
        break;
      }
      case 'max':
      case 'min': {
        let best = at(start);
        for (let j = 1; j < inner; j++) {
          const v = at(start + j);
          if (Number.isNaN(v)) {
            best = v; // NaN propagates, as in PyTorch
            break;
          }
          if (op === 'max' ? v > best : v < best) best = v;
        }
        out[o] = best;
        break;
      }
      case 'argmax':
      case 'argmin': {
        let best = at(start);
        let bi = 0;
        for (let j = 1; j < inner && !Number.isNaN(best); j++) {
          const v = at(start + j);
          if (Number.isNaN(v) || (op === 'argmax' ? v > best : v < best)) {
            best = v;
            bi = j;
          }
        }
        out[o] = bi;
        break;
      }
    }
  }
  return storageOf(out, outDtype);
};
