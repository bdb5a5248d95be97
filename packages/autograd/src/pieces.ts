import { cat, type Tensor, zeros } from '@lowrank/tensor';

/**
 * Gradients that arrive at one tensor in parts. A slice's gradient is the output's gradient
 * placed in a region of a zero tensor; when a tensor is split (GPT-2's `c_attn(x).split(C, 2)`),
 * padding each part with zeros (or index-adding it into zeros) and summing the padded parts
 * costs a fill and an indexAdd per part plus the sum. Instead the parts wait here until every
 * contribution has arrived (the node runs), then one `cat` writes each part into its region of
 * one buffer, with zero chains only in the gaps (three copies for q, k, v: no fill, no indexAdd).
 */

/** Where a part's gradient lies in its input: indices [start, end) along `dim`. */
export interface Placement {
  /** The dim the region spans. */
  readonly dim: number;
  /** First index (inclusive). */
  readonly start: number;
  /** End index (exclusive). */
  readonly end: number;
}

interface Piece {
  readonly place: Placement;
  readonly grad: Tensor;
}

/** The gradient pending at one tensor: a dense sum so far, plus parts placed in regions of it. */
export class PendingGrad {
  private dense: Tensor | null = null;
  private readonly pieces: Piece[] = [];

  /** Adds a full-shaped gradient (handed over: this object owns it now). */
  add(g: Tensor): void {
    if (this.dense === null) {
      this.dense = g;
      return;
    }
    const prev = this.dense;
    this.dense = prev.add(g);
    prev.dispose();
    g.dispose();
  }

  /** Adds a gradient of the region `place` of the tensor (handed over). */
  addPiece(place: Placement, grad: Tensor): void {
    this.pieces.push({ place, grad });
  }

  /** Whether some part waits to be placed. */
  get hasPieces(): boolean {
    return this.pieces.length > 0;
  }

  /**
   * The whole gradient, of `shape` (owned by the caller; this object is empty afterwards): per
   * dim, the parts that do not overlap go into one cat each (parts that overlap an earlier one
   * start another), and those cats and the dense sum are added (lazily, so the sum fuses into
   * whatever reads it).
   */
  take(shape: readonly number[]): Tensor {
    const terms: Tensor[] = [];
    if (this.dense) terms.push(this.dense);
    this.dense = null;
    const byDim = new Map<number, Piece[]>();
    for (const p of this.pieces.splice(0)) {
      const list = byDim.get(p.place.dim) ?? [];
      list.push(p);
      byDim.set(p.place.dim, list);
    }
    for (const [dim, list] of byDim) {
      list.sort((a, b) => a.place.start - b.place.start);
      const layers: Piece[][] = [];
      for (const p of list) {
        const layer = layers.find((l) => l[l.length - 1].place.end <= p.place.start);
        if (layer) layer.push(p);
        else layers.push([p]);
      }
      for (const layer of layers) terms.push(placeAll(layer, dim, shape));
    }
    let sum = terms[0];
    for (const t of terms.slice(1)) {
      const next = sum.add(t);
      sum.dispose();
      t.dispose();
      sum = next;
    }
    return sum;
  }

  /** Frees everything pending (a walk that threw). */
  dispose(): void {
    this.dense?.dispose();
    this.dense = null;
    for (const p of this.pieces.splice(0)) p.grad.dispose();
  }
}

/** Non-overlapping parts along `dim` (sorted) as one tensor of `shape`: one cat, zeros in the gaps. */
function placeAll(layer: readonly Piece[], dim: number, shape: readonly number[]): Tensor {
  const first = layer[0];
  if (layer.length === 1 && first.place.start === 0 && first.place.end === shape[dim]) return first.grad;
  const device = first.grad.device;
  const made: Tensor[] = [];
  const gap = (from: number, to: number) => {
    const s = [...shape];
    s[dim] = to - from;
    made.push(zeros(s, { device })); // a constant chain: cat writes it, no fill kernel of its own
    return made[made.length - 1];
  };
  const parts: Tensor[] = [];
  let at = 0;
  for (const p of layer) {
    if (p.place.start > at) parts.push(gap(at, p.place.start));
    parts.push(p.grad);
    at = p.place.end;
  }
  if (at < shape[dim]) parts.push(gap(at, shape[dim]));
  const out = cat(parts, dim);
  for (const t of made) t.dispose();
  for (const p of layer) p.grad.dispose();
  return out;
}
