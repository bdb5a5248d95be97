import { type OpAttrs, OpError, type OpName, reshape, sum, type Tensor } from '@lowrank/tensor';
import type { Placement } from './pieces.js';

/**
 * What a gradient rule sees during `backward()`. Saved tensors are detached views sharing the
 * storage of the op's inputs/output as they were recorded (null where the rule did not ask).
 */
export interface BackwardContext<A extends object> {
  /** Gradient w.r.t. the op's output (the output's shape; possibly a strided view). */
  readonly grad: Tensor;
  /** Saved inputs, by position (null unless listed in the rule's `saveInputs`). */
  readonly inputs: readonly (Tensor | null)[];
  /** Saved output (null unless the rule sets `saveOutput`). */
  readonly output: Tensor | null;
  /** Shapes of all inputs (always available). */
  readonly inputShapes: readonly (readonly number[])[];
  /** The op's parameters as reported by the tensor package. */
  readonly attrs: A;
  /** Which inputs need a gradient (the rule may return null for the others). */
  readonly needs: readonly boolean[];
}

/**
 * A vector-Jacobian product for one op, written with public tensor ops so it runs on every
 * backend. It runs with recording off and inside a tidy scope: return one gradient per input
 * (shaped like that input) or null where `needs[i]` is false or the input is not differentiable.
 */
export interface GradRule<A extends object = object> {
  /** Positions of the inputs the rule reads (they are kept alive until backward). */
  readonly saveInputs?: readonly number[];
  /** Whether the rule reads the output. */
  readonly saveOutput?: boolean;
  /** Gradients w.r.t. each input, from the output's gradient `ctx.grad` (null where not needed). */
  backward(ctx: BackwardContext<A>): (Tensor | null)[];
  /**
   * For an op of one input whose gradient is the output's gradient placed in a region of zeros
   * (a step-1 slice): that region, or null where `backward` must run instead. Autograd then
   * gathers the parts of a split with one cat (pieces.ts) rather than padding each.
   */
  placement?(attrs: A, inputShape: readonly number[]): Placement | null;
}

/** A table of rules for some of the tensor package's ops, typed by their attrs. */
export type RuleTable = { readonly [K in OpName]?: GradRule<OpAttrs[K]> };

const custom = new Map<string, GradRule>();

/**
 * Registers a gradient rule for an op name that the tensor package does not define (an op built
 * with `runOp` in another package). Built-in ops cannot be overridden.
 *
 * @example
 * // y = x³ as one op, with its own rule: dy/dx = 3x²
 * const cube = (x: lr.Tensor) => lr.runOp('cube', [x], {}, () => x.mul(x).mul(x));
 * lr.registerGradRule('cube', { saveInputs: [0], backward: ({ grad, inputs: [x] }) => [grad.mul(x!.square().mul(3))] });
 * const x = lr.tensor([2], { requiresGrad: true });
 * cube(x).sum().backward(); // x.grad = [12]
 */
export function registerGradRule<A extends object>(op: string, rule: GradRule<A>): void {
  custom.set(op, rule as GradRule);
}

export function customRule(op: string): GradRule | undefined {
  return custom.get(op);
}

/**
 * Sums `g` over broadcast dims so that it has `shape` (the inverse of broadcasting).
 *
 * @example
 * // a [3] bias was broadcast to [2, 3]: its gradient sums over the broadcast rows
 * lr.unbroadcast(lr.ones([2, 3]), [3]); // [2, 2, 2]
 */
export function unbroadcast(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  if (lead < 0)
    throw new OpError(
      'backward',
      `internal: cannot reduce a gradient of rank ${g.rank} to [${shape.join(',')}]`,
    );
  const dims: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  const reduced = dims.length > 0 ? sum(g, dims, true) : g;
  return reshape(reduced, shape);
}

/** The output gradient reshaped with the reduced dims kept as size 1 (for reductions). */
export function keepdimShape(inputShape: readonly number[], dims: readonly number[]): number[] {
  return inputShape.map((d, i) => (dims.includes(i) ? 1 : d));
}
