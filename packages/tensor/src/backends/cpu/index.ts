import type { Backend, KernelTable } from '../../backend.js';
import type { TypedArray } from '../../dtype.js';
import { registerBackend, registerKernels } from '../../engine/registry.js';
import { OpError } from '../../errors.js';
import type { Storage } from '../../storage.js';
import { attention, attentionBackward } from './attention.js';
import { crossEntropyRows } from './cross-entropy.js';
import { elementwise } from './elementwise.js';
import { gather, indexAdd, indexSelect, scatterAdd } from './indexing.js';
import { loraMatmul } from './lora-matmul.js';
import { matmul } from './matmul.js';
import { matmulEpilogue } from './matmul-epilogue.js';
import { norm, normBackward, normParamGrad } from './norm.js';
import { adamUpdate } from './optim.js';
import { dequantize, quantize, quantMatmul } from './quant.js';
import { reduce, softmax } from './reduce.js';
import { allocate, reserveCpuSlot, storageOf } from './storage.js';

/** The CPU backend: plain TypeScript over typed arrays. It is the executable specification. */
export const cpuBackend: Backend = {
  device: 'cpu',
  description: 'CPU (TypeScript)',
  maxStorageBytes: 2 ** 31 - 1,
  // generated loops take any number of operands; this bounds the size of one loop nest
  maxFusedInputs: 16,
  storageBytes: (dtype, size) => size * (dtype === 'bool' ? 1 : 4),
  checkStorageBytes(op, bytes) {
    if (bytes > cpuBackend.maxStorageBytes)
      throw new OpError(
        op,
        `a tensor of ${bytes} bytes exceeds the CPU backend's largest storage (${cpuBackend.maxStorageBytes} bytes)`,
      );
  },
  upload(data, dtype) {
    return storageOf(data.slice(), dtype);
  },
  allocate: (dtype, size) => allocate(dtype, size),
  async read(storage: Storage) {
    return (storage.handle as TypedArray).slice();
  },
  release(storage: Storage) {
    storage.handle = null;
  },
  reserve: reserveCpuSlot,
};

export const cpuKernels = {
  elementwise,
  reduce,
  softmax,
  crossEntropyRows,
  norm,
  normBackward,
  normParamGrad,
  matmul,
  loraMatmul,
  matmulEpilogue,
  attention,
  attentionBackward,
  gather,
  indexSelect,
  scatterAdd,
  indexAdd,
  adamUpdate,
  quantMatmul,
  dequantize,
  quantize,
} satisfies KernelTable;

export function registerCpuBackend(): void {
  registerBackend(cpuBackend);
  registerKernels('cpu', cpuKernels);
}
