import { afterEach, describe, expect, it } from 'vitest';
import { elementwise } from '../src/backends/cpu/elementwise.js';
import * as lr from '../src/index.js';

describe('errors inside a fused kernel', () => {
  afterEach(() => lr.registerKernels('cpu', { elementwise }));

  it('name the op the user called (the chain root), not the fused kernel', async () => {
    const x = lr.tensor([1, 2, 3]);
    const y = lr.tidy(() => x.mul(2).exp());
    lr.registerKernels('cpu', {
      elementwise: () => {
        throw new lr.OpError('elementwise', 'the device ran out of memory');
      },
    });
    await expect(y.data()).rejects.toThrow(/^exp: the device ran out of memory$/);
    lr.dispose(x, y);
  });

  it('leave the chain lazy and intact, so a later read can still succeed', async () => {
    const x = lr.tensor([1, 2, 3]);
    const y = lr.tidy(() => x.add(1));
    lr.registerKernels('cpu', {
      elementwise: () => {
        throw new lr.OpError('elementwise', 'transient');
      },
    });
    await expect(y.data()).rejects.toThrow(/^add: transient$/);
    lr.registerKernels('cpu', { elementwise });
    expect(Array.from(await y.data())).toEqual([2, 3, 4]);
    lr.dispose(x, y);
  });
});
