/**
 * Browser stand-in for `gpu-node.ts`, chosen by the `browser` condition of the `#gpu-node` import
 * (see `imports` in package.json): bundles for the browser never reach the `webgpu` package, and
 * `acquireGPU` only gets here when `navigator.gpu` is missing.
 */

/** Always fails: a browser's GPU is `navigator.gpu`, and this one has none. */
export async function nodeGPU(): Promise<GPU> {
  throw new Error('navigator.gpu is not available in this browser (the webgpu package is Node-only)');
}
