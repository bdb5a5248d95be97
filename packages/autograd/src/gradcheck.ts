import { fromTypedArray, Generator, type Tensor, tidy } from '@lowrank/tensor';
import { enableGrad, noGrad } from './mode.js';

/** Options of `gradcheck`. */
export interface GradcheckOptions {
  /** Finite-difference step (default 1e-2: inputs and outputs are float32). */
  eps?: number;
  /** Absolute tolerance (default 1e-3). */
  atol?: number;
  /** Relative tolerance (default 1e-2). */
  rtol?: number;
  /** Seed of the random projection of the output (default 1). */
  seed?: number;
}

/** One element whose analytic and numeric gradients disagree. */
export interface GradcheckMismatch {
  /** Position of the input in `inputs`. */
  input: number;
  /** Flat (row-major) index of the element in that input. */
  index: number;
  /** The gradient `backward()` computed. */
  analytic: number;
  /** The central finite difference. */
  numeric: number;
}

/** What `gradcheck` found. */
export interface GradcheckResult {
  /** True when every element is within tolerance. */
  ok: boolean;
  /** Largest |analytic − numeric| / (atol + rtol·|numeric|) over all elements (≤ 1 passes). */
  worst: number;
  /** The elements out of tolerance (empty when `ok`). */
  mismatches: GradcheckMismatch[];
}

/**
 * Checks the gradients `backward` computes for `f` against central finite differences.
 * The output is projected on a random vector r (L = Σ rᵢ·f(x)ᵢ, accumulated in float64), so one
 * backward with gradient r checks the whole Jacobian-vector product; each float32 input element
 * is moved by ±eps (the step actually taken in float32 is used) and L is re-evaluated.
 * Non-float32 inputs (indices) are passed through unchanged. Runs on the inputs' device.
 *
 * @example
 * const x = lr.randn([3, 4], { requiresGrad: true });
 * const { ok, worst } = await lr.gradcheck((a) => a.tanh().square().sum(), [x]);
 * ok; // true
 */
export async function gradcheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  options: GradcheckOptions = {},
): Promise<GradcheckResult> {
  const eps = options.eps ?? 1e-2;
  const atol = options.atol ?? 1e-3;
  const rtol = options.rtol ?? 1e-2;
  const gen = new Generator(options.seed ?? 1);
  const rand = () => gen.nextFloat();
  const diff = inputs.map((x) => x.dtype === 'float32');
  const values = await Promise.all(inputs.map((x) => x.data()));

  // analytic: backward(r) through f at detached leaves
  const leaves = inputs.map((x, i) => (diff[i] ? x.detach().requiresGrad_(true) : x));
  let r: Float32Array;
  let analytic: (Float32Array | null)[];
  try {
    const out = enableGrad(() => tidy(() => f(...leaves)));
    r = new Float32Array(out.size).map(() => rand() * 2 - 1);
    const rt = fromTypedArray(r, out.shape, { device: out.device });
    try {
      if (out.requiresGrad) out.backward(rt);
    } finally {
      rt.dispose();
      out.dispose();
    }
    analytic = await Promise.all(
      leaves.map(async (l, i) =>
        diff[i] ? (l.grad ? ((await l.grad.data()) as Float32Array) : new Float32Array(l.size)) : null,
      ),
    );
  } finally {
    leaves.forEach((l, i) => {
      if (diff[i]) l.dispose();
    });
  }

  const evaluate = async (which: number, at: number, value: number): Promise<number> => {
    const changed = Float32Array.from(values[which] as Float32Array);
    changed[at] = value;
    const moved = fromTypedArray(changed, inputs[which].shape, { device: inputs[which].device });
    const y = noGrad(() => tidy(() => f(...inputs.map((x, i) => (i === which ? moved : x)))));
    const ys = await y.data();
    y.dispose();
    moved.dispose();
    let s = 0;
    for (let k = 0; k < ys.length; k++) s += r[k] * ys[k];
    return s;
  };

  const mismatches: GradcheckMismatch[] = [];
  let worst = 0;
  for (let i = 0; i < inputs.length; i++) {
    const a = analytic[i];
    if (!a) continue;
    const x = values[i];
    for (let j = 0; j < x.length; j++) {
      const hi = Math.fround(x[j] + eps);
      const lo = Math.fround(x[j] - eps);
      const numeric = ((await evaluate(i, j, hi)) - (await evaluate(i, j, lo))) / (hi - lo);
      const err = Math.abs(a[j] - numeric) / (atol + rtol * Math.abs(numeric));
      if (!(err <= 1)) mismatches.push({ input: i, index: j, analytic: a[j], numeric });
      worst = Math.max(worst, Number.isNaN(err) ? Number.POSITIVE_INFINITY : err);
    }
  }
  return { ok: mismatches.length === 0, worst, mismatches };
}
