/**
 * The engine's process-wide state, one module per job: the registry of backends and kernels
 * (engine/registry.ts), memory accounting (engine/memory.ts), tidy scopes (engine/scopes.ts), op
 * dispatch and the autograd hook (engine/dispatch.ts) and lazy fusion (engine/lazy.ts). This file
 * only gathers them for code outside the package's internals.
 */
export * from './engine/dispatch.js';
export * from './engine/lazy.js';
export * from './engine/memory.js';
export * from './engine/registry.js';
export * from './engine/scopes.js';
