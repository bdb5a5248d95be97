export * from './subspace.js';
export * from './svd.js';
