/**
 * The two-layer MLP training step of the overhead benchmarks (`mlp-compile.ts` on WebGPU,
 * `cpu-mlp.ts` on the CPU): x [B, in] → Linear → ReLU → Linear → MSE against a fixed target,
 * backward, Adam (lr 1e-3). The same step in lowrank and in tfjs (`tf.train.adam`).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { Adam, F, Linear } from '../packages/nn/src/index.js';
import * as lr from '../packages/tensor/src/index.js';

export interface MlpShape {
  batch: number;
  inp: number;
  hidden: number;
  out: number;
}

/**
 * One lowrank training step per call (the loss is returned; the caller disposes it). With
 * `compile`, the step is an `lr.compile`d function: a warm-up call, a traced one, then replays.
 */
export function lowrankMlp(
  s: MlpShape,
  device: lr.Device,
  options: { compile?: boolean } = {},
): { step: () => lr.Tensor; dispose: () => void } {
  const g = new lr.Generator(0);
  const fc1 = new Linear(s.inp, s.hidden, { generator: g, device });
  const fc2 = new Linear(s.hidden, s.out, { generator: g, device });
  const x = lr.randn([s.batch, s.inp], { generator: g, device });
  const y = lr.randn([s.batch, s.out], { generator: g, device });
  const params = [...fc1.parameters(), ...fc2.parameters()];
  const opt = new Adam(params, { lr: 1e-3 });
  const eager = (): lr.Tensor => {
    const loss = lr.tidy(() => F.mseLoss(fc2.forward(fc1.forward(x).relu()), y));
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss;
  };
  const compiled = lr.compile(() => eager().detach());
  const dispose = (): void => {
    compiled.dispose();
    opt.zeroGrad();
    for (const st of Object.values(opt.stateDict().state))
      for (const t of Object.values(st.tensors)) if (t instanceof lr.Tensor) t.dispose();
    lr.dispose(params, x, y);
  };
  return { step: options.compile ? compiled : eager, dispose };
}

/** The same step in tfjs (whatever backend is active); returns the loss (the caller disposes it). */
export function tfjsMlp(s: MlpShape): { step: () => tf.Scalar; dispose: () => void } {
  const glorot = (i: number, o: number): tf.Variable => {
    const lim = Math.sqrt(1 / i);
    return tf.variable(tf.randomUniform([i, o], -lim, lim, 'float32', 0));
  };
  const w1 = glorot(s.inp, s.hidden);
  const b1 = tf.variable(tf.zeros([s.hidden]));
  const w2 = glorot(s.hidden, s.out);
  const b2 = tf.variable(tf.zeros([s.out]));
  const x = tf.randomNormal([s.batch, s.inp], 0, 1, 'float32', 1);
  const y = tf.randomNormal([s.batch, s.out], 0, 1, 'float32', 2);
  const opt = tf.train.adam(1e-3);
  const step = (): tf.Scalar =>
    opt.minimize(
      () =>
        tf.mean(
          tf.squaredDifference(tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, w1), b1)), w2), b2), y),
        ) as tf.Scalar,
      true,
    ) as tf.Scalar;
  const dispose = (): void => {
    opt.dispose();
    tf.dispose([w1, b1, w2, b2, x, y]);
  };
  return { step, dispose };
}
