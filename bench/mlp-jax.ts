/**
 * The MLP training step (ReLU, MSE, Adam) in jax-js 0.1.25: forward, valueAndGrad and the
 * bias-corrected Adam update in one jitted function, on whatever device jax-js was initialised
 * with (Wasm in wasm-cpu.ts, WebGPU in mlp-compile.ts). A devDependency of bench/ only.
 */
import {
  blockUntilReady,
  jit,
  nn as jnn,
  numpy as jnp,
  random as jrandom,
  tree as jtree,
  valueAndGrad,
} from '@jax-js/jax';
import type { MlpShape } from './mlp-common.js';

// a type alias (not an interface) so that it is assignable to jax-js's JsTree
type JaxParams = { w1: jnp.Array; b1: jnp.Array; w2: jnp.Array; b2: jnp.Array };

/** The same step in jax-js: forward, valueAndGrad and Adam (bias-corrected) in one jitted function. */
export function jaxMlp(
  shape: MlpShape,
  options: { read?: boolean } = {},
): { step: () => Promise<void>; dispose: () => void } {
  const { batch: B, inp: I, hidden: H, out: O } = shape;
  const read = options.read ?? true;
  const [beta1, beta2, lrate, eps] = [0.9, 0.999, 1e-3, 1e-8];
  const keys = ['w1', 'b1', 'w2', 'b2'] as const;
  const loss = (p: JaxParams, x: jnp.Array, y: jnp.Array) => {
    const h = jnn.relu(jnp.matmul(x, p.w1).add(p.b1));
    return jnp.mean(jnp.square(jnp.matmul(h, p.w2).add(p.b2).sub(y)));
  };
  const step = jit(
    (p: JaxParams, m: JaxParams, v: JaxParams, x: jnp.Array, y: jnp.Array, c1: jnp.Array, c2: jnp.Array) => {
      const [value, g] = valueAndGrad(loss)(jtree.ref(p), x, y);
      const out = { p: {} as JaxParams, m: {} as JaxParams, v: {} as JaxParams };
      for (const k of keys) {
        const gk = g[k];
        const mk = m[k].mul(beta1).add(gk.ref.mul(1 - beta1));
        const vk = v[k].mul(beta2).add(gk.ref.mul(gk).mul(1 - beta2));
        // p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps), as torch.optim.Adam
        out.p[k] = p[k].sub(mk.ref.mul(c1.ref).div(jnp.sqrt(vk.ref).mul(c2.ref).add(eps)));
        out.m[k] = mk;
        out.v[k] = vk;
      }
      c1.dispose();
      c2.dispose();
      return [value, out.p, out.m, out.v] as [jnp.Array, JaxParams, JaxParams, JaxParams];
    },
  );
  const zeros = (): JaxParams => ({
    w1: jnp.zeros([I, H]),
    b1: jnp.zeros([H]),
    w2: jnp.zeros([H, O]),
    b2: jnp.zeros([O]),
  });
  let p: JaxParams = {
    w1: jrandom.normal(jrandom.key(1), [I, H]).mul(1 / Math.sqrt(I)),
    b1: jnp.zeros([H]),
    w2: jrandom.normal(jrandom.key(2), [H, O]).mul(1 / Math.sqrt(H)),
    b2: jnp.zeros([O]),
  };
  let m = zeros();
  let v = zeros();
  const x = jrandom.normal(jrandom.key(3), [B, I]);
  const y = jrandom.normal(jrandom.key(4), [B, O]);
  let t = 0;
  return {
    step: async () => {
      t++;
      const c1 = jnp.array(lrate / (1 - beta1 ** t));
      const c2 = jnp.array(1 / Math.sqrt(1 - beta2 ** t));
      const [value, np, nm, nv] = step(p, m, v, x.ref, y.ref, c1, c2);
      p = np;
      m = nm;
      v = nv;
      // the loss read back each step (as lowrank's item() and tfjs's data()), or only realised
      if (read) await value.data();
      else await blockUntilReady(value);
    },
    dispose: () => {
      jtree.dispose([p, m, v]);
      x.dispose();
      y.dispose();
      step.dispose();
    },
  };
}
