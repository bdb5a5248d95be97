import { OpError, type Tensor, tidy, zerosLike } from '@lowrank/tensor';
import { enableGrad } from './mode.js';

/**
 * Sets `.grad` of each tensor to null, disposing the old gradient.
 *
 * @example
 * const w = lr.ones([2], { requiresGrad: true });
 * w.mul(3).sum().backward();
 * lr.zeroGrad([w]); // w.grad === null
 */
export function zeroGrad(tensors: Iterable<Tensor>): void {
  for (const t of tensors) {
    t.grad?.dispose();
    t.grad = null;
  }
}

/** Options of `grad` and `valueAndGrad`. */
export interface GradOptions {
  /** Positions of the arguments to differentiate with respect to (default: every argument). */
  argnums?: readonly number[];
}

/** What the function returned by `valueAndGrad` returns. */
export interface ValueAndGrad {
  /** f's value (a tensor that does not require grad). */
  value: Tensor;
  /** Gradient of f w.r.t. each argument in `argnums`, in that order (zeros where f ignores it). */
  grads: Tensor[];
}

/**
 * `valueAndGrad(f)(...xs)` evaluates the scalar function `f` and its gradient with respect to
 * its tensor arguments, without touching the arguments' own `.grad` or `requiresGrad`. The
 * graph and intermediates are freed before it returns; `value` and `grads` belong to the caller
 * (and to its enclosing tidy scope, like any op result).
 *
 * @example
 * const f = (w: Tensor) => w.square().sum();
 * const { value, grads: [dw] } = valueAndGrad(f)(w); // dw = 2w
 */
export function valueAndGrad(
  f: (...xs: Tensor[]) => Tensor,
  options: GradOptions = {},
): (...xs: Tensor[]) => ValueAndGrad {
  return (...xs: Tensor[]) => {
    const argnums = options.argnums ?? xs.map((_, i) => i);
    for (const i of argnums) {
      const x = xs[i];
      if (x === undefined) throw new OpError('grad', `argnums has ${i} but f got ${xs.length} arguments`);
      if (x.dtype !== 'float32')
        throw new OpError('grad', `argument ${i} must be float32 to be differentiated, got ${x.dtype}`);
    }
    // Detached aliases as the leaves: the caller's tensors are not modified.
    const leaves = xs.map((x, i) => (argnums.includes(i) ? x.detach().requiresGrad_(true) : x));
    const owned = leaves.filter((l, i) => l !== xs[i]);
    try {
      const value = enableGrad(() =>
        tidy(() => {
          const out = f(...leaves);
          if (out.size !== 1) {
            throw new OpError(
              'grad',
              `f must return a one-element tensor, got shape [${out.shape.join(',')}]`,
            );
          }
          out.backward(); // explains itself when out does not depend on the arguments differentiably
          return out.detach();
        }),
      );
      const grads = argnums.map((i) => {
        const leaf = leaves[i];
        const g = leaf.grad ? leaf.grad.detach() : zerosLike(leaf);
        return g;
      });
      return { value, grads };
    } finally {
      for (const l of owned) l.dispose(); // also disposes their .grad (the returned aliases keep the storage)
    }
  };
}

/**
 * `grad(f)(...xs)`: the gradients of the scalar function `f` w.r.t. its arguments (see
 * `valueAndGrad`).
 *
 * @example
 * const [dx] = grad((x: Tensor) => x.sin().sum())(x); // cos(x)
 */
export function grad(
  f: (...xs: Tensor[]) => Tensor,
  options: GradOptions = {},
): (...xs: Tensor[]) => Tensor[] {
  const vg = valueAndGrad(f, options);
  return (...xs: Tensor[]) => {
    const { value, grads } = vg(...xs);
    value.dispose();
    return grads;
  };
}
