export * from './replicated-log.js';
export * from './local-log.js';
