/**
 * Node-only GPU acquisition through the `webgpu` npm package (Dawn). This is the only module that
 * names `webgpu`; a browser build replaces it with `gpu-browser.ts` (the `browser` condition of
 * the `#gpu-node` import in package.json) and `navigator.gpu` is used instead.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let instance: GPU | null = null;

/**
 * The two lines Dawn's Vulkan backend prints from C++ (straight to file descriptor 2, past any
 * JavaScript hook) while it enumerates adapters whose driver reports more dynamic buffers per
 * pipeline layout than Dawn supports (lavapipe reports 1000000, RADV 500000; Dawn clamps to 16).
 * They are notes about an internal clamp, not errors, and Dawn has no toggle to silence them.
 */
export const DAWN_LIMIT_WARNING =
  /^Warning: maxDynamic(?:Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?\n?/gm;

/**
 * Runs `fn` (synchronous: Dawn prints during the `requestAdapter` call itself, before its promise
 * is returned) with file descriptor 2 pointed at a temporary file, then puts the original stderr
 * back and writes to it everything captured except Dawn's limit-clamp warnings: nothing else is
 * dropped. Only where `/proc/self/fd` can reopen stderr (Linux, stderr a terminal, pipe or file:
 * a shell's redirections); elsewhere `fn` runs as it is and the warnings, if any, show: on other
 * systems, and where stderr is a socket, which is what Node's `child_process` gives a child.
 */
export function filterDawnWarnings<T>(fn: () => T): T {
  let saved: number;
  try {
    saved = openSync('/proc/self/fd/2', 'a');
  } catch {
    return fn(); // no /proc (macOS, Windows: no Vulkan warnings there either) or a socket
  }
  let dir: string;
  try {
    dir = mkdtempSync(join(tmpdir(), 'lowrank-dawn-'));
  } catch (e) {
    closeSync(saved);
    throw e;
  }
  const capture = join(dir, 'stderr');
  let swapped = false;
  let outcome: { value: T } | { error: unknown };
  try {
    closeSync(openSync(capture, 'w'));
    closeSync(2);
    const fd = openSync(capture, 'a'); // the lowest free descriptor: 2
    swapped = fd === 2;
    if (!swapped) {
      closeSync(fd);
      throw new Error(`webgpu: could not redirect stderr (got descriptor ${fd})`);
    }
    outcome = { value: fn() };
  } catch (error) {
    outcome = { error };
  }
  if (swapped) closeSync(2);
  const back = openSync(`/proc/self/fd/${saved}`, 'a');
  closeSync(saved);
  const rest = readFileSync(capture, 'utf8').replace(DAWN_LIMIT_WARNING, '');
  rmSync(dir, { recursive: true, force: true });
  if (back !== 2) throw new Error(`webgpu: stderr was not restored (got descriptor ${back})`);
  if (rest.length > 0) writeSync(2, rest);
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

/**
 * Dawn's instance flags from the environment: `LOWRANK_DAWN_FEATURES` (comma-separated Dawn
 * toggles, such as `disable_robustness,skip_validation`) becomes `enable-dawn-features=…`, and
 * `LOWRANK_DAWN_DISABLE_FEATURES` `disable-dawn-features=…`. Unset: none (Dawn's defaults, which
 * browsers use too). The two named above trade safety for speed: robustness clamps every buffer
 * index a shader computes, validation checks every command on the CPU.
 *
 * @example
 * dawnFlags({ LOWRANK_DAWN_FEATURES: 'disable_robustness' }); // ['enable-dawn-features=disable_robustness']
 */
export function dawnFlags(env: Readonly<Record<string, string | undefined>>): string[] {
  const flags: string[] = [];
  const list = (v: string | undefined) =>
    (v ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t.length > 0);
  const on = list(env.LOWRANK_DAWN_FEATURES);
  const off = list(env.LOWRANK_DAWN_DISABLE_FEATURES);
  for (const t of [...on, ...off]) {
    if (!/^[a-z0-9_]+$/.test(t))
      throw new Error(
        `webgpu: Dawn toggles are lower_snake_case names, got '${t}' in LOWRANK_DAWN_(DISABLE_)FEATURES`,
      );
  }
  if (on.length > 0) flags.push(`enable-dawn-features=${on.join(',')}`);
  if (off.length > 0) flags.push(`disable-dawn-features=${off.join(',')}`);
  return flags;
}

/** The process-wide Dawn instance (kept referenced: the instance lives as long as this object). */
export async function nodeGPU(): Promise<GPU> {
  if (instance) return instance;
  // Without XDG_RUNTIME_DIR the Vulkan loader (Mesa's WSI layers) complains on stderr on every
  // run; Dawn never presents to a window here, so any existing directory quiets it. Set before
  // Dawn creates its instance, and only when the user has not set it.
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create(dawnFlags(process.env));
  const request = gpu.requestAdapter.bind(gpu);
  let first = true;
  // Dawn enumerates (and warns) on the first request only
  gpu.requestAdapter = (options?: GPURequestAdapterOptions) => {
    if (!first) return request(options);
    first = false;
    return filterDawnWarnings(() => request(options));
  };
  instance = gpu;
  return instance;
}
