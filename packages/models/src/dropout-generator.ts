import { Dropout, type Module } from '@lowrank/nn';
import { Generator } from '@lowrank/tensor';

/**
 * Gives every dropout of `model` the generator `gen`: its `Dropout` modules and any layer with a
 * `generator` of its own (LoRA layers draw their adapter dropout from it). Models built without
 * one share the global generator, so two models trained in alternation drew from one stream and
 * neither run was reproducible on its own.
 *
 * @example
 * const gen = useDropoutGenerator(model, new Generator(7)); // model's dropout masks now come from gen
 */
export function useDropoutGenerator(model: Module, gen: Generator): Generator {
  for (const m of model.modules()) {
    if (m instanceof Dropout) m.generator = gen;
    else if ('generator' in m && m.generator instanceof Generator)
      (m as { generator: Generator }).generator = gen;
  }
  return gen;
}
