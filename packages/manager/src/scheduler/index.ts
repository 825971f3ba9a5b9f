export * from './node-info.js';
export * from './filter.js';
export * from './filters/index.js';
export * from './pipeline.js';
export * from './placement.js';
export * from './scheduler.js';
