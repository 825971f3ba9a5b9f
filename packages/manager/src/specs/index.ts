export * from './constraint.js';
export * from './validate.js';
export * from './defaults.js';
export * from './networks.js';
export * from './canary.js';
