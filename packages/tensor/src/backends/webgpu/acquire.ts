/** Finds a `GPU` object: `navigator.gpu` in browsers, Dawn through the `webgpu` package in Node. */
export async function acquireGPU(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  if (!isNode) throw new Error('navigator.gpu is not available in this browser');
  let mod: typeof import('#gpu-node');
  try {
    mod = await import('#gpu-node');
  } catch (e) {
    throw new Error(`the 'webgpu' package could not be loaded (${(e as Error).message})`);
  }
  return mod.nodeGPU();
}
