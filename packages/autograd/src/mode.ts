/** Gradient mode: whether ops are recorded into the graph right now. */

let enabled = true;

/**
 * Whether ops are recorded (false inside `noGrad`, true inside `enableGrad`).
 *
 * @example
 * lr.isGradEnabled(); // true
 * lr.noGrad(() => lr.isGradEnabled()); // false
 */
export function isGradEnabled(): boolean {
  return enabled;
}

function withMode<T>(name: string, flag: boolean, fn: () => T): T {
  const prev = enabled;
  enabled = flag;
  let result: T;
  try {
    result = fn();
  } finally {
    enabled = prev;
  }
  if (result instanceof Promise) {
    throw new Error(
      `${name}: fn must be synchronous (it returned a Promise); the mode cannot follow an await`,
    );
  }
  return result;
}

/**
 * Runs `fn` without recording: results do not require grad and no graph is kept (evaluation,
 * optimizer updates). `fn` must be synchronous.
 *
 * @example
 * const y = noGrad(() => model(x)); // y.requiresGrad === false
 */
export function noGrad<T>(fn: () => T): T {
  return withMode('noGrad', false, fn);
}

/**
 * Runs `fn` with recording on, even inside `noGrad`. `fn` must be synchronous.
 *
 * @example
 * const w = lr.ones([2], { requiresGrad: true });
 * lr.noGrad(() => lr.enableGrad(() => w.mul(2)).requiresGrad); // true
 */
export function enableGrad<T>(fn: () => T): T {
  return withMode('enableGrad', true, fn);
}
