export * from './options.js';
export * from './restart/index.js';
export * from './replicated/index.js';
export * from './global/index.js';
export * from './task-reaper/index.js';
