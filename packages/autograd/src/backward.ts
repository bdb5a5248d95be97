import { keep, OpError, ones, type Tensor, tidy } from '@lowrank/tensor';
import { noGrad, pendingNoGradAsync } from './mode.js';
import { blockedReason, type Edge, type Node, nodeOf } from './node.js';
import { PendingGrad } from './pieces.js';

const fmt = (shape: readonly number[]) => `[${shape.join(',')}]`;

/** Options of `tensor.backward()`. */
export interface BackwardOptions {
  /** Keep the graph's saved tensors so that backward can run through it again (default false). */
  retainGraph?: boolean;
}

/** Reverse topological order of the nodes reachable from `root` (root first). */
function topoOrder(root: Node): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>([root]);
  const stack: { node: Node; next: number }[] = [{ node: root, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.next < top.node.edges.length) {
      const e = top.node.edges[top.next++];
      if (e && 'node' in e && !seen.has(e.node)) {
        seen.add(e.node);
        stack.push({ node: e.node, next: 0 });
      }
    } else {
      order.push(top.node);
      stack.pop();
    }
  }
  return order.reverse();
}

function checkGradient(t: Tensor, gradient: Tensor | undefined): void {
  if (gradient === undefined) {
    if (t.size !== 1) {
      throw new OpError(
        'backward',
        `the tensor has shape ${fmt(t.shape)}: a gradient can only be implied for a one-element tensor; pass one, e.g. backward(lr.onesLike(t))`,
      );
    }
    return;
  }
  gradient.assertLive('backward');
  if (gradient.shape.length !== t.shape.length || gradient.shape.some((d, i) => d !== t.shape[i])) {
    throw new OpError(
      'backward',
      `gradient has shape ${fmt(gradient.shape)}, expected the tensor's shape ${fmt(t.shape)}`,
    );
  }
  if (gradient.dtype !== 'float32')
    throw new OpError('backward', `gradient must be float32, got ${gradient.dtype}`);
  if (gradient.device !== t.device) {
    throw new OpError('backward', `gradient is on '${gradient.device}', the tensor on '${t.device}'`);
  }
}

/** Adds `g` (owned by the caller, handed over) into a leaf's `.grad`. */
function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.isDisposed) {
    g.dispose();
    return;
  }
  if (leaf.grad === null || leaf.grad.isDisposed) {
    // a fresh contiguous tensor that owns its storage, outside every tidy scope
    const owned = g.isContiguous() && g.offset === 0 && g.storage.size === g.size && g.storage.refs === 1;
    leaf.grad = keep(owned ? g : g.clone());
    if (!owned) g.dispose();
    return;
  }
  leaf.grad.add_(g); // in place, so references to `.grad` (optimizers) stay valid
  g.dispose();
}

/**
 * Implements `t.backward(gradient?, { retainGraph })`: walks the graph from `t` in reverse
 * topological order, calls each node's rule once with the sum of the gradients that reached it,
 * and accumulates into the `.grad` of every leaf that requires grad.
 */
export function backward(t: Tensor, gradient: Tensor | undefined, options: BackwardOptions = {}): void {
  t.assertLive('backward');
  if (!t.requiresGrad) {
    const why = blockedReason(t);
    throw new OpError(
      'backward',
      why
        ? `the tensor does not require grad: its value comes from a tensor that requires grad only through ${why}, which is not differentiable`
        : `the tensor does not require grad: no tensor it was computed from has requiresGrad (or it was computed inside noGrad)${
            pendingNoGradAsync() > 0
              ? `; ${pendingNoGradAsync()} noGradAsync call(s) are pending, and recording stays off until they settle`
              : ''
          }`,
    );
  }
  checkGradient(t, gradient);
  const root = nodeOf(t);
  if (root === null) {
    // backward on a leaf: its gradient is the seed itself
    const seed = noGrad(() => (gradient ? gradient.clone() : ones(t.shape, { device: t.device })));
    accumulateLeaf(t, seed);
    return;
  }
  const order = topoOrder(root);
  for (const n of order) {
    if (n.consumed) {
      throw new OpError(
        'backward',
        `trying to backward through the graph a second time (node '${n.op}' ${fmt(n.outputShape)} was already freed); pass { retainGraph: true } to the first backward() if you need to`,
      );
    }
  }
  const retain = options.retainGraph ?? false;
  noGrad(() =>
    tidy(() => {
      const pending = new Map<Node, PendingGrad>();
      // parts of a leaf's gradient (a split parameter) are placed once the walk is over
      const leafParts = new Map<Tensor, PendingGrad>();
      const seed = new PendingGrad();
      seed.add(gradient ? gradient.detach() : ones(t.shape, { device: t.device }));
      pending.set(root, seed);
      try {
        for (const node of order) {
          const p = pending.get(node);
          pending.delete(node);
          if (p !== undefined) runNode(node, p.take(node.outputShape), pending, leafParts);
          if (!retain) {
            node.consumed = true;
            node.releaseSaved();
          }
        }
        for (const [leaf, p] of leafParts) {
          leafParts.delete(leaf);
          accumulateLeaf(leaf, p.take(leaf.shape));
        }
      } finally {
        for (const p of pending.values()) p.dispose();
        for (const p of leafParts.values()) p.dispose();
      }
    }),
  );
}

function runNode(
  node: Node,
  g: Tensor,
  pending: Map<Node, PendingGrad>,
  leafParts: Map<Tensor, PendingGrad>,
): void {
  const rule = node.rule;
  if (!rule) {
    g.dispose();
    throw new OpError(
      'backward',
      `op '${node.op}' has no gradient rule (register one with registerGradRule)`,
    );
  }
  const place = rule.placement?.(node.attrs, node.inputs[0].shape) ?? null;
  const edge = node.edges[0];
  if (place && edge && node.edges.length === 1) {
    // g belongs in a region of the input's gradient: it waits there for the other parts
    const target = 'leaf' in edge ? partsOf(leafParts, edge.leaf) : partsOf(pending, edge.node);
    target.addPiece(place, g);
    return;
  }
  const needs = node.edges.map((e) => e !== null);
  const saved = [...node.savedInputs, node.savedOutput];
  const grads = tidy(() =>
    rule.backward({
      grad: g,
      inputs: node.savedInputs,
      output: node.savedOutput,
      inputShapes: node.inputs.map((i) => i.shape),
      attrs: node.attrs,
      needs,
    }),
  );
  // Each gradient handed on must be owned by this walk: alias the ones that are not fresh.
  const handed = new Set<Tensor>();
  node.edges.forEach((edge, i) => {
    let gi = grads[i] ?? null;
    if (!edge || !gi) return;
    const expected = node.inputs[i].shape;
    if (gi.shape.length !== expected.length || gi.shape.some((d, k) => d !== expected[k])) {
      throw new OpError(
        'backward',
        `internal: the rule for '${node.op}' returned a gradient of shape ${fmt(gi.shape)} for input ${i} of shape ${fmt(expected)}`,
      );
    }
    if (gi === g || handed.has(gi) || saved.includes(gi)) gi = gi.detach();
    handed.add(gi);
    send(edge, gi, pending);
  });
  for (const gi of grads) if (gi && !handed.has(gi) && gi !== g && !saved.includes(gi)) gi.dispose();
  g.dispose();
}

function partsOf<K>(map: Map<K, PendingGrad>, key: K): PendingGrad {
  let p = map.get(key);
  if (!p) {
    p = new PendingGrad();
    map.set(key, p);
  }
  return p;
}

function send(edge: NonNullable<Edge>, g: Tensor, pending: Map<Node, PendingGrad>): void {
  if ('leaf' in edge) {
    accumulateLeaf(edge.leaf, g);
    return;
  }
  partsOf(pending, edge.node).add(g);
}
