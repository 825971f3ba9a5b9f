export * from './ready.js';
export * from './resources.js';
export * from './constraints.js';
export * from './platform.js';
export * from './host-port.js';
export * from './max-replicas.js';
