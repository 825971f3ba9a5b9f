export * from './reconcile.js';
export * from './replicated.js';
