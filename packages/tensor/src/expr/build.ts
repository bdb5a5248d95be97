import type { DType } from '../dtype.js';
import type { Expr } from './program.js';
import { type ScalarOpName, TABLE } from './table.js';

/**
 * Builders of expression nodes for code that writes a program by hand (ops/rotary.ts, the kernel
 * tests): a load of input `input`, a constant slot, and an op whose dtype follows the table's
 * rule (comparisons and logical ops give bool; `float` ops float32; the rest their operands',
 * `where` its branches').
 *
 * @example
 * exprKey(opOf('mul', loadOf(0), constOf(0))); // "mul(L0,C0f)"
 */
export const loadOf = (input: number, dtype: DType = 'float32'): Expr => ({ kind: 'load', input, dtype });

/** A constant slot of the program's `consts`. */
export const constOf = (index: number, dtype: DType = 'float32'): Expr => ({ kind: 'const', index, dtype });

/** An op node over `args`, its dtype by the table's rule. */
export function opOf(op: ScalarOpName, ...args: Expr[]): Expr {
  const row = TABLE[op];
  const dtype: DType =
    row.result === 'bool' ? 'bool' : row.result === 'float' ? 'float32' : args[row.arity === 3 ? 1 : 0].dtype;
  return { kind: 'op', op, args, dtype };
}
