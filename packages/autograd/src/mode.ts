/** Gradient mode: whether ops are recorded into the graph right now. */

/**
 * The mode set by the innermost synchronous `noGrad` / `enableGrad` (null outside both). A
 * synchronous region wins over any pending `noGradAsync`, so `enableGrad` inside one still records.
 */
let syncMode: boolean | null = null;

/**
 * How many `noGradAsync` calls are pending. The mode is global (no async context exists in both
 * the browser and Node), so while one is pending, every op outside a synchronous region is
 * unrecorded, including those of a training step that interleaves with it.
 */
let asyncOff = 0;

/**
 * Whether ops are recorded (false inside `noGrad` and while a `noGradAsync` is pending, true inside
 * `enableGrad`).
 *
 * @example
 * lr.isGradEnabled(); // true
 * lr.noGrad(() => lr.isGradEnabled()); // false
 */
export function isGradEnabled(): boolean {
  return syncMode ?? asyncOff === 0;
}

/**
 * How many `noGradAsync` calls are pending (backward names them when a loss did not record).
 *
 * @example
 * pendingNoGradAsync(); // 0
 */
export function pendingNoGradAsync(): number {
  return asyncOff;
}

function withMode<T>(name: string, flag: boolean, fn: () => T): T {
  const prev = syncMode;
  syncMode = flag;
  let result: T;
  try {
    result = fn();
  } finally {
    syncMode = prev;
  }
  if (result instanceof Promise) {
    throw new Error(
      `${name}: fn must be synchronous (it returned a Promise); the mode cannot follow an await${
        name === 'noGrad' ? ' (use noGradAsync for an async function)' : ''
      }`,
    );
  }
  return result;
}

/**
 * Runs `fn` without recording: results do not require grad and no graph is kept (evaluation,
 * optimizer updates). `fn` must be synchronous; use `noGradAsync` for an async function.
 *
 * @example
 * const y = noGrad(() => model(x)); // y.requiresGrad === false
 */
export function noGrad<T>(fn: () => T): T {
  return withMode('noGrad', false, fn);
}

/**
 * Runs the async function `fn` without recording until the promise it returns settles (for
 * `generate` and other code that awaits read-backs). The mode is global, not per call chain: while
 * it is pending, ops anywhere outside a synchronous `enableGrad` are not recorded, so do not train
 * concurrently with it (backward then says a `noGradAsync` is pending).
 *
 * @example
 * const text = await lr.noGradAsync(() => generate(model, tok, 'Hello', { maxNewTokens: 8 }));
 */
export async function noGradAsync<T>(fn: () => Promise<T>): Promise<T> {
  asyncOff++;
  try {
    return await fn();
  } finally {
    asyncOff--;
  }
}

/**
 * Runs `fn` with recording on, even inside `noGrad` or a pending `noGradAsync`. `fn` must be
 * synchronous.
 *
 * @example
 * const w = lr.ones([2], { requiresGrad: true });
 * lr.noGrad(() => lr.enableGrad(() => w.mul(2)).requiresGrad); // true
 */
export function enableGrad<T>(fn: () => T): T {
  return withMode('enableGrad', true, fn);
}
