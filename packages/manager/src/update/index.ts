export * from './plan.js';
export * from './updater.js';
