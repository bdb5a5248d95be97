import { type Device, fromTypedArray, type Generator, type Tensor } from '@lowrank/tensor';

/** LoRA's A init: kaiming-uniform with a = √5 (PyTorch Linear's default) = U(±1/√fan_in), fan_in = shape[1]. */
export function kaimingUniform(shape: readonly [number, number], gen: Generator, device: Device): Tensor {
  const bound = 1 / Math.sqrt(shape[1]);
  const v = new Float32Array(shape[0] * shape[1]);
  gen.fillUniform(v, -bound, bound);
  return fromTypedArray(v, shape, { device });
}

/** N(0, std²). */
export function normal(
  shape: readonly [number, number],
  std: number,
  gen: Generator,
  device: Device,
): Tensor {
  const v = new Float32Array(shape[0] * shape[1]);
  gen.fillNormal(v, 0, std);
  return fromTypedArray(v, shape, { device });
}
