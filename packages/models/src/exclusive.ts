/**
 * One model, one training or evaluation call at a time. A training step switches the model to
 * train mode and changes its weights, so an evaluation that awaited across one used to read a
 * mix (5.55569 instead of 5.55467 in the run); calls on one model now run one after
 * another in the order they were made.
 */

const tails = new WeakMap<object, Promise<unknown>>();

/**
 * Runs `fn` once every earlier `exclusive` call on `model` has settled; resolves or rejects
 * with `fn`'s result. A failed call does not block the ones after it.
 *
 * @example
 * const [a, b] = await Promise.all([exclusive(model, () => step()), exclusive(model, () => evaluate())]);
 */
export function exclusive<T>(model: object, fn: () => Promise<T>): Promise<T> {
  const before = tails.get(model) ?? Promise.resolve();
  const run = before.then(fn, fn);
  const tail = run.catch(() => {});
  tails.set(model, tail);
  // drop the entry once the chain is idle, so a settled model holds no promise
  void tail.then(() => {
    if (tails.get(model) === tail) tails.delete(model);
  });
  return run;
}
