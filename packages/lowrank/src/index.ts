/**
 * lowrank — the package users import: `import * as lr from 'lowrank'`.
 * Re-exports every layer: tensor → autograd → nn → lora → models.
 *
 * @module lowrank
 */

export * from '@lowrank/autograd';
export * from '@lowrank/lora';
export * from '@lowrank/models';
export * from '@lowrank/nn';
export * from '@lowrank/tensor';
