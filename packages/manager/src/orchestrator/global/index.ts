export * from './reconcile.js';
export * from './global.js';
