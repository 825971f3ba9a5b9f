export * from './dirty.js';
export * from './plan.js';
export * from './updater.js';
