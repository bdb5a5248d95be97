import { getAutogradHooks } from '../engine.js';
import { fmtShape, OpError } from '../errors.js';
import { broadcastStrides } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { add, cast, div, mul, sub } from './elementwise.js';
import { kernel, type TensorLike, viewAs, wrap } from './util.js';

/**
 * In-place updates, for optimizers and initialisers. They write into the tensor's storage (every
 * view of it sees the change) and are refused on tensors that require grad unless gradients are
 * off (inside `noGrad`), since the graph may have saved the old values.
 */
export function checkInPlace(op: string, t: Tensor): void {
  t.assertLive(op);
  const hooks = getAutogradHooks();
  if (t.requiresGrad && hooks?.isGradEnabled()) {
    throw new OpError(
      op,
      'a tensor that requires grad cannot be modified in place while gradients are recorded; use noGrad()',
    );
  }
}

/** Writes `value` (broadcast to t's shape, cast to t's dtype) into t. */
function writeInto(op: string, t: Tensor, value: Tensor): void {
  const src = cast(value, t.dtype);
  if (value.device !== t.device)
    throw new OpError(op, `expected tensors on one device, got '${t.device}' and '${value.device}'`);
  let strides: number[];
  try {
    strides = broadcastStrides(op, src.shape, src.strides, t.shape);
  } catch {
    throw new OpError(
      op,
      `cannot write a tensor of shape ${fmtShape(value.shape)} into one of shape ${fmtShape(t.shape)}`,
    );
  }
  if (t.size > 0) kernel(op, t, 'assign')(t.view_(), viewAs(src, t.shape, strides));
  if (src !== value) src.dispose();
}

function update(op: string, t: Tensor, compute: () => Tensor): void {
  checkInPlace(op, t);
  const hooks = getAutogradHooks();
  const result = hooks ? hooks.noGrad(compute) : compute();
  writeInto(op, t, result);
  result.dispose();
}

export function add_<T extends Tensor>(t: T, other: TensorLike, alpha = 1): T {
  update('add_', t, () => {
    if (alpha === 1) return add(t, other);
    if (typeof other === 'object') {
      const scaled = mul(other, alpha);
      const out = add(t, scaled);
      scaled.dispose();
      return out;
    }
    return add(t, Number(other) * alpha);
  });
  return t;
}

export function sub_<T extends Tensor>(t: T, other: TensorLike): T {
  update('sub_', t, () => sub(t, other));
  return t;
}

export function mul_<T extends Tensor>(t: T, other: TensorLike): T {
  update('mul_', t, () => mul(t, other));
  return t;
}

export function div_<T extends Tensor>(t: T, other: TensorLike): T {
  update('div_', t, () => div(t, other));
  return t;
}

/** Copies src (broadcast to t's shape, cast to its dtype) into t. */
export function copy_<T extends Tensor>(t: T, src: Tensor): T {
  checkInPlace('copy_', t);
  src.assertLive('copy_');
  writeInto('copy_', t, src);
  return t;
}

export function fill_<T extends Tensor>(t: T, value: number): T {
  checkInPlace('fill_', t);
  const one = wrap(kernel('fill_', t, 'fill')(1, value, t.dtype), []);
  if (t.size > 0)
    kernel(
      'fill_',
      t,
      'assign',
    )(
      t.view_(),
      viewAs(
        one,
        t.shape,
        t.shape.map(() => 0),
      ),
    );
  one.dispose();
  return t;
}
