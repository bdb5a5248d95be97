import type { ElementwiseProgram } from '../../expr/program.js';
import { coalesce } from '../../shape.js';
import type { Storage, View } from '../../storage.js';
import { constBits, constDtypes, expressionCode, ONE_BITS, programKey } from './program.js';
import { s, u, unravel, WGSL_TYPE } from './wgsl.js';

/**
 * The layout of row kernels that read several elementwise programs of one shape [...rows, cols]
 * (a norm's input and gradient, each a fused chain) plus 1-D vectors (a weight, per-row
 * statistics): one binding per distinct storage, the rows' dims coalesced across every program
 * input, and the uniform words each needs. In WGSL, program p's value at column `j` of the
 * current row is the call `val<p>(…row offsets…, j)`, after `rowOffsets(row)` declared them.
 */
export class RowPrograms {
  /** Storages bound after the kernel's outputs, in binding order. */
  readonly storages: Storage[] = [];
  /** Uniform words (u32; strides and offsets are bit patterns of i32). */
  readonly words: number[];
  private readonly rowShapeAt: number;
  private readonly rank: number;
  private readonly inputs: { slot: number; offsetAt: number; rowStrideAt: number; colStrideAt: number }[][] =
    [];
  private readonly constAt: number[] = [];
  private readonly vectorAt: { slot: number; offsetAt: number; strideAt: number }[] = [];
  private readonly oneAt: number;

  /** `head` are the kernel's own first words (sizes, eps, …). */
  constructor(
    private readonly programs: readonly ElementwiseProgram[],
    vectors: readonly (View | null)[],
    head: readonly number[],
  ) {
    const words = [...head];
    const all = programs.flatMap((p) => p.inputs.map((v) => v.strides.slice(0, -1)));
    const rowShape = programs[0].shape.slice(0, -1);
    const rowPart = coalesce(rowShape, all);
    this.rank = rowPart.shape.length;
    this.rowShapeAt = words.length;
    words.push(...rowPart.shape);
    let flat = 0;
    for (const p of programs) {
      const entries = p.inputs.map((v) => {
        const e = {
          slot: this.bind(v.storage),
          offsetAt: words.length,
          rowStrideAt: words.length + 1,
          colStrideAt: words.length + 1 + this.rank,
        };
        words.push(v.offset, ...rowPart.strides[flat++], v.strides[v.strides.length - 1]);
        return e;
      });
      this.inputs.push(entries);
      this.constAt.push(words.length);
      const cd = constDtypes(p);
      words.push(...p.consts.map((c, i) => constBits(c, cd[i])));
    }
    for (const v of vectors) {
      if (!v) continue;
      this.vectorAt.push({ slot: this.bind(v.storage), offsetAt: words.length, strideAt: words.length + 1 });
      words.push(v.offset, v.strides[0] ?? 1);
    }
    this.oneAt = words.length;
    words.push(ONE_BITS);
    this.words = words;
  }

  private bind(storage: Storage): number {
    let i = this.storages.indexOf(storage);
    if (i < 0) {
      i = this.storages.length;
      this.storages.push(storage);
    }
    return i;
  }

  /** The uniform words as the dispatch takes them (negative strides wrap to their bit pattern). */
  uniform(): Uint32Array {
    return Uint32Array.from(this.words, (w) => w >>> 0);
  }

  /** Part of the pipeline key: each program's structure and bindings, the row rank, the vectors. */
  key(): string {
    const parts = this.programs.map((p) => {
      const slots = this.storages;
      return programKey(p, { storages: slots, slot: p.inputs.map((v) => slots.indexOf(v.storage)) });
    });
    const dtypes = this.storages.map((st) => st.dtype[0]).join('');
    return `${parts.join(';')}|r${this.rank}|v${this.vectorAt.map((v) => v.slot).join(',')}|${dtypes}`;
  }

  /** WGSL declarations of the input bindings, from binding `first` on. */
  bindings(first: number): string {
    return this.storages
      .map(
        (st, j) =>
          `@group(0) @binding(${first + j}) var<storage, read> in${j}: array<${WGSL_TYPE[st.dtype]}>;`,
      )
      .join('\n');
  }

  private names(p: number): string[] {
    return this.inputs[p].map((_, i) => `ro${p}_${i}`);
  }

  /** WGSL functions `val<p>(offsets…, j: u32) -> f32`, one per program. */
  functions(): string {
    return this.programs
      .map((prog, p) => {
        const names = this.names(p);
        const params = [...names.map((n) => `${n}: i32`), 'j: u32'].join(', ');
        const loads = this.inputs[p]
          .map((e, i) => `let x${i} = in${e.slot}[${names[i]} + i32(j) * ${s(e.colStrideAt)}];`)
          .join('\n  ');
        const code = expressionCode(prog.root, 'r_', (i) => u(this.constAt[p] + i), u(this.oneAt));
        return `fn val${p}(${params}) -> f32 {
  ${loads}
  ${code}
  return f32(r_);
}`;
      })
      .join('\n');
  }

  /** WGSL declaring every program input's offset for row `row` (a u32 expression). */
  rowOffsets(row: string): string {
    const names = this.programs.flatMap((_, p) => this.names(p));
    const entries = this.inputs.flat();
    return unravel(
      row,
      this.rank,
      this.rowShapeAt,
      names,
      entries.map((e) => s(e.offsetAt)),
      entries.map((e) => e.rowStrideAt),
    );
  }

  /** WGSL calling program p's value at column `j` of the row whose offsets were declared. */
  value(p: number, j: string): string {
    return `val${p}(${[...this.names(p), j].join(', ')})`;
  }

  /** WGSL reading element `i` (a u32 expression) of the k-th non-null vector. */
  vector(k: number, i: string): string {
    const v = this.vectorAt[k];
    return `in${v.slot}[${s(v.offsetAt)} + i32(${i}) * ${s(v.strideAt)}]`;
  }
}
