export * from './control.js';
export * from './services.js';
export * from './tasks.js';
export * from './nodes.js';
export * from './cluster.js';
export * from './networks.js';
