import type { Tensor } from '@lowrank/tensor';
import { type InputInfo, type Node, nodeOf } from './node.js';

/** Options of `graph`. */
export interface GraphOptions {
  /** 'text' (default): an indented tree; 'dot': Graphviz source (`dot -Tsvg`). */
  format?: 'text' | 'dot';
  /** Names to show for tensors (parameters, inputs), e.g. `{ w, b, x }`. */
  names?: Record<string, Tensor>;
}

const fmt = (shape: readonly number[]) => `[${shape.join(',')}]`;

/**
 * Describes what `backward()` would walk from `t`: each recorded op with its output shape, and
 * its inputs — other ops, leaves that require grad (their `.grad` receives the gradient), or
 * constants (no gradient). A node reached twice is printed once and referred to afterwards.
 *
 * @example
 * console.log(graph(loss, { names: { w, x } }));
 * // sum [] #7 requiresGrad
 * // └─ relu [2,4] #6
 * //    └─ matmul [2,4] #5
 * //       ├─ x [2,3] constant
 * //       └─ w [3,4] leaf requiresGrad
 */
export function graph(t: Tensor, options: GraphOptions = {}): string {
  const names = new Map<number, string>();
  for (const [name, tensor] of Object.entries(options.names ?? {})) names.set(tensor.id, name);
  const label = (id: number, fallback: string) => names.get(id) ?? fallback;
  return options.format === 'dot' ? dot(t, label) : text(t, label);
}

type Label = (id: number, fallback: string) => string;

function nodeLine(n: Node, label: Label): string {
  const freed = n.consumed ? ' (freed by backward)' : '';
  return `${label(n.outputId, n.op)}${names(n, label)} ${fmt(n.outputShape)} #${n.outputId}${freed}`;
}

function names(n: Node, label: Label): string {
  const name = label(n.outputId, n.op);
  return name === n.op ? '' : ` = ${n.op}`;
}

function inputLine(info: InputInfo, label: Label): string {
  const kind = info.requiresGrad
    ? 'leaf requiresGrad'
    : info.dtype === 'float32'
      ? 'constant'
      : `${info.dtype} constant`;
  return `${label(info.id, `#${info.id}`)} ${fmt(info.shape)} ${kind}`;
}

function text(t: Tensor, label: Label): string {
  const root = nodeOf(t);
  if (!root) {
    const kind = t.requiresGrad ? 'leaf requiresGrad' : 'no graph (does not require grad)';
    return `${label(t.id, `#${t.id}`)} ${fmt(t.shape)} ${kind}`;
  }
  const lines: string[] = [];
  const printed = new Set<Node>();
  const visit = (n: Node, lead: string, connector: string) => {
    if (printed.has(n)) {
      lines.push(`${lead}${connector}${label(n.outputId, n.op)} #${n.outputId} (shown above)`);
      return;
    }
    printed.add(n);
    lines.push(`${lead}${connector}${nodeLine(n, label)}${n === root ? ' requiresGrad' : ''}`);
    const childLead = lead + (connector === '' ? '' : connector === '└─ ' ? '   ' : '│  ');
    n.edges.forEach((e, i) => {
      const conn = i === n.edges.length - 1 ? '└─ ' : '├─ ';
      if (e && 'node' in e) visit(e.node, childLead, conn);
      else lines.push(`${childLead}${conn}${inputLine(n.inputs[i], label)}`);
    });
  };
  visit(root, '', '');
  return lines.join('\n');
}

function dot(t: Tensor, label: Label): string {
  const out = ['digraph autograd {', '  rankdir=BT;', '  node [fontname="monospace"];'];
  const root = nodeOf(t);
  if (!root) {
    out.push(`  t${t.id} [label="${label(t.id, `#${t.id}`)} ${fmt(t.shape)}", shape=box];`, '}');
    return out.join('\n');
  }
  const seen = new Set<Node>([root]);
  const boxes = new Set<number>();
  const stack = [root];
  while (stack.length > 0) {
    const n = stack.pop()!;
    const style = n.consumed ? ', style=dashed' : '';
    out.push(
      `  n${n.outputId} [label="${label(n.outputId, n.op)}${names(n, label)}\\n${fmt(n.outputShape)}", shape=ellipse${style}];`,
    );
    n.edges.forEach((e, i) => {
      if (e && 'node' in e) {
        out.push(`  n${e.node.outputId} -> n${n.outputId};`);
        if (!seen.has(e.node)) {
          seen.add(e.node);
          stack.push(e.node);
        }
        return;
      }
      const info = n.inputs[i];
      out.push(`  t${info.id} -> n${n.outputId};`);
      if (boxes.has(info.id)) return;
      boxes.add(info.id);
      const color = info.requiresGrad ? ', style=filled, fillcolor=lightblue' : '';
      out.push(
        `  t${info.id} [label="${label(info.id, `#${info.id}`)}\\n${fmt(info.shape)}", shape=box${color}];`,
      );
    });
  }
  out.push('}');
  return out.join('\n');
}
