export * from './errors.js';
export * from './logger.js';
export * from './config.js';
export * from './exec.js';
export * from './clock.js';
export * from './metrics.js';
export * from './input.js';
export * from './phases.js';
