/**
 * Node-only GPU acquisition through the `webgpu` npm package (Dawn). This is the only module that
 * names `webgpu`; a browser build replaces it with `gpu-browser.ts` (the `browser` condition of
 * the `#gpu-node` import in package.json) and `navigator.gpu` is used instead.
 */

let instance: GPU | null = null;

/** The process-wide Dawn instance (kept referenced: the instance lives as long as this object). */
export async function nodeGPU(): Promise<GPU> {
  if (instance) return instance;
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  instance = create([]);
  return instance;
}
