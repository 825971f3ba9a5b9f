export * from './plan.js';
export * from './allocator.js';
