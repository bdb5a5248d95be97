import { F, type LossReduction } from '@lowrank/nn';
import { type Device, tensor } from '@lowrank/tensor';
import { describe, expect, it } from 'vitest';
import { expectClose, list, num, obj, REF, ref, webgpuUnavailable } from './helpers.js';

const LOSSES = obj(REF.losses);
const unavailable = await webgpuUnavailable();
const tol = { rtol: 1e-4, atol: 1e-5 };

function lossSuite(device: Device, full: boolean): void {
  const int = (v: Parameters<typeof ref>[0]) => ref(v, { device, dtype: 'int32' });

  it('crossEntropy: ignoreIndex, labelSmoothing and every reduction match torch', async () => {
    const c = obj(LOSSES.cross_entropy);
    for (const k of list(c.cases)) {
      const kase = obj(k);
      const x = ref(c.logits, { device, requiresGrad: true });
      const loss = F.crossEntropy(x, int(c.targets), {
        ignoreIndex: num(c.ignore_index),
        labelSmoothing: num(kase.label_smoothing),
        reduction: kase.reduction as LossReduction,
      });
      await expectClose(loss, kase.loss, tol);
      loss.sum().backward();
      await expectClose(x.grad!, kase.dlogits, tol);
    }
  });

  it('crossEntropy: a custom ignoreIndex, [N, C, d] logits, probability targets, unbatched', async () => {
    for (const key of [
      'cross_entropy_custom_ignore',
      'cross_entropy_kdim',
      'cross_entropy_probs',
      'cross_entropy_unbatched',
    ]) {
      if (!full && key !== 'cross_entropy_kdim') continue;
      const c = obj(LOSSES[key]);
      const x = ref(c.logits, { device, requiresGrad: true });
      const targets = key === 'cross_entropy_probs' ? ref(c.targets, { device }) : int(c.targets);
      const loss = F.crossEntropy(x, targets, {
        ignoreIndex: c.ignore_index === undefined ? undefined : num(c.ignore_index),
        labelSmoothing: c.label_smoothing === undefined ? undefined : num(c.label_smoothing),
      });
      await expectClose(loss, c.loss, tol);
      loss.backward();
      await expectClose(x.grad!, c.dlogits, tol);
    }
  });

  it('mse matches torch for every reduction', async () => {
    const c = obj(LOSSES.mse);
    for (const k of list(c.cases)) {
      const kase = obj(k);
      const x = ref(c.input, { device, requiresGrad: true });
      const loss = F.mseLoss(x, ref(c.target, { device }), { reduction: kase.reduction as LossReduction });
      await expectClose(loss, kase.loss, tol);
      loss.sum().backward();
      await expectClose(x.grad!, kase.dinput, tol);
    }
    expect(F.mse).toBe(F.mseLoss);
  });

  it('bceWithLogits matches torch (large logits, posWeight, weight, reductions)', async () => {
    const c = obj(LOSSES.bce_with_logits);
    for (const k of list(c.cases)) {
      const kase = obj(k);
      const x = ref(c.input, { device, requiresGrad: true });
      const loss = F.bceWithLogits(x, ref(c.target, { device }), {
        reduction: kase.reduction as LossReduction,
        posWeight: kase.pos_weight ? ref(c.pos_weight, { device }) : null,
        weight: kase.weight ? ref(c.weight, { device }) : null,
      });
      await expectClose(loss, kase.loss, tol);
      loss.sum().backward();
      await expectClose(x.grad!, kase.dinput, tol);
    }
  });
}

describe('losses against PyTorch on cpu', () => {
  lossSuite('cpu', true);

  it('crossEntropy with every target ignored gives NaN (0/0), as PyTorch', async () => {
    const loss = F.crossEntropy(tensor([[1, 2]]), tensor([-100], { dtype: 'int32' }));
    expect(Number.isNaN(await loss.item())).toBe(true);
  });

  it('losses reject bad arguments with the op name', () => {
    const x = tensor([[1, 2]]);
    expect(() => F.crossEntropy(x, tensor([0], { dtype: 'int32' }), { labelSmoothing: 2 })).toThrow(
      /crossEntropy: labelSmoothing must be in \[0, 1\]/,
    );
    expect(() => F.mseLoss(x, x, { reduction: 'avg' as LossReduction })).toThrow(
      /mseLoss: reduction must be/,
    );
    expect(() => F.bceWithLogits(x, tensor([1]))).toThrow(
      /bceWithLogits: target must have the input's shape/,
    );
  });
});

if (unavailable) {
  describe('losses on webgpu', () => {
    it.skip(`skipped: WebGPU unavailable (${unavailable})`, () => {});
  });
} else {
  describe('losses against PyTorch on webgpu', () => lossSuite('webgpu', false));
}
