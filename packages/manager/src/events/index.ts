export * from './derive.js';
export * from './history.js';
