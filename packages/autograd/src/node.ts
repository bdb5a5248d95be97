import { keep, NON_DIFFERENTIABLE_OPS, type OpName, onSavedForBackward, Tensor } from '@lowrank/tensor';
import { isGradEnabled } from './mode.js';
import { customRule, type GradRule } from './rule.js';
import { RULES } from './rules/index.js';

/** Where the gradient of one input of a node goes: another node, or a leaf's `.grad`. */
export type Edge = { readonly node: Node } | { readonly leaf: Tensor } | null;

/** What the graph remembers about each input (for error messages and the graph printer). */
export interface InputInfo {
  readonly id: number;
  readonly shape: readonly number[];
  readonly dtype: Tensor['dtype'];
  readonly requiresGrad: boolean;
}

/**
 * One recorded op (the `gradFn` of the tensor it produced). It holds detached views of the
 * tensors its rule needs and edges to the nodes/leaves of its inputs.
 */
export class Node {
  /**
   * Holders of this node: its output tensor while live, plus nodes downstream that point here.
   * At zero nobody can reach the node any more and its saved tensors are released.
   */
  refs = 1;
  /** True once backward ran through it without `retainGraph` (its saved tensors are gone). */
  consumed = false;
  private saved: Tensor[] = [];

  constructor(
    readonly op: string,
    readonly rule: GradRule | undefined,
    readonly attrs: object,
    readonly edges: readonly Edge[],
    readonly inputs: readonly InputInfo[],
    readonly savedInputs: readonly (Tensor | null)[],
    readonly savedOutput: Tensor | null,
    readonly outputId: number,
    readonly outputShape: readonly number[],
    savedResiduals: readonly Tensor[] = [],
  ) {
    for (const t of savedInputs) if (t) this.saved.push(t);
    if (savedOutput) this.saved.push(savedOutput);
    this.saved.push(...savedResiduals);
  }

  /** Frees the saved tensors (idempotent). */
  releaseSaved(): void {
    for (const t of this.saved) t.dispose();
    this.saved = [];
  }

  get numSaved(): number {
    return this.saved.length;
  }
}

export function nodeOf(t: Tensor): Node | null {
  return t.gradFn instanceof Node ? t.gradFn : null;
}

const NON_DIFFERENTIABLE = new Set<string>(NON_DIFFERENTIABLE_OPS);

/**
 * Why a tensor that does not require grad cannot carry one: the non-differentiable op its value
 * came through from a tensor that required grad (for the error `backward` gives).
 */
const blockedBy = new WeakMap<Tensor, string>();

export function blockedReason(t: Tensor): string | undefined {
  return blockedBy.get(t);
}

function saveView(t: Tensor): Tensor {
  // A new tensor over the same storage: the user may dispose `t` (or a tidy scope may), the
  // graph still holds the values. Exempt from tidy scopes; released after backward. A lazy
  // value stays lazy unless fusion's `computeSaved` option says otherwise.
  onSavedForBackward(t.storage);
  return keep(t.detach());
}

/**
 * A fused op hands its residuals (attention's logsumexp, a norm's 1/σ) to its gradient as
 * Tensor-valued attrs: they are saved like inputs (a detached, kept view each, released with the
 * node), and the rule's `ctx.attrs` holds the saved views.
 */
function saveResiduals(attrs: object, saved: Tensor[]): object {
  let copy: Record<string, unknown> | null = null;
  for (const [key, value] of Object.entries(attrs)) {
    if (!(value instanceof Tensor)) continue;
    copy ??= { ...attrs };
    const view = saveView(value);
    copy[key] = view;
    saved.push(view);
  }
  return copy ?? attrs;
}

/** The autograd hook's `recordOp`: builds a node when an input requires grad. */
export function recordOp(op: string, inputs: readonly Tensor[], output: Tensor, attrs: object): void {
  if (!isGradEnabled() || inputs.includes(output)) return;
  let anyGrad = false;
  let inherited: string | undefined;
  for (const t of inputs) {
    if (t.requiresGrad) anyGrad = true;
    else inherited ??= blockedBy.get(t);
  }
  if (!anyGrad) {
    if (inherited !== undefined) blockedBy.set(output, inherited);
    return;
  }
  if (NON_DIFFERENTIABLE.has(op)) {
    blockedBy.set(output, `'${op}'`);
    return;
  }
  if (output.dtype !== 'float32') {
    blockedBy.set(output, `'${op}' to ${output.dtype}`);
    return;
  }
  const rule = (RULES as Partial<Record<string, GradRule>>)[op as OpName] ?? customRule(op);
  const edges: Edge[] = inputs.map((t) => {
    if (!t.requiresGrad) return null;
    const n = nodeOf(t);
    if (n) {
      n.refs++;
      return { node: n };
    }
    return { leaf: t };
  });
  const saveIn = new Set(rule?.saveInputs ?? []);
  const savedInputs = inputs.map((t, i) => (saveIn.has(i) ? saveView(t) : null));
  const savedOutput = rule?.saveOutput ? saveView(output) : null;
  const info = inputs.map((t) => ({
    id: t.id,
    shape: t.shape,
    dtype: t.dtype,
    requiresGrad: t.requiresGrad,
  }));
  const residuals: Tensor[] = [];
  const nodeAttrs = saveResiduals(attrs, residuals);
  output.gradFn = new Node(
    op,
    rule,
    nodeAttrs,
    edges,
    info,
    savedInputs,
    savedOutput,
    output.id,
    output.shape,
    residuals,
  );
  output.requiresGrad = true;
}

/** Drops one holder of `node`; releases it (and, in turn, nodes only it held) at zero. */
export function unref(node: Node): void {
  const stack = [node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (--n.refs > 0) continue;
    n.releaseSaved();
    for (const e of n.edges) if (e && 'node' in e) stack.push(e.node);
  }
}

/** The autograd hook's `onDispose`: the output tensor no longer holds its node. */
export function onDispose(t: Tensor): void {
  const n = nodeOf(t);
  if (n) unref(n);
}
