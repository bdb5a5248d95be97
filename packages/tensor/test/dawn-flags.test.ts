import { describe, expect, it } from 'vitest';
import { dawnFlags } from '../src/backends/webgpu/gpu-node.js';

describe('Dawn instance flags from the environment', () => {
  it('none unless asked for; lists become enable/disable flags', () => {
    expect(dawnFlags({})).toEqual([]);
    expect(dawnFlags({ LOWRANK_DAWN_FEATURES: '' })).toEqual([]);
    expect(dawnFlags({ LOWRANK_DAWN_FEATURES: 'disable_robustness, skip_validation' })).toEqual([
      'enable-dawn-features=disable_robustness,skip_validation',
    ]);
    expect(
      dawnFlags({
        LOWRANK_DAWN_FEATURES: 'disable_robustness',
        LOWRANK_DAWN_DISABLE_FEATURES: 'timestamp_quantization',
      }),
    ).toEqual(['enable-dawn-features=disable_robustness', 'disable-dawn-features=timestamp_quantization']);
  });

  it('refuses what is not a toggle name (a flag injected through the list)', () => {
    expect(() => dawnFlags({ LOWRANK_DAWN_FEATURES: 'disable_robustness,adapter=x' })).toThrow(
      /lower_snake_case names, got 'adapter=x'/,
    );
  });
});
