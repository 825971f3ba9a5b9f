export * from './deps.js';
export * from './cluster.js';
export * from './replies.js';
export * from './streams.js';
export * from './callers.js';
export * from './leader-forwarding.js';
export * from './wire.js';
export * from './lean-lists.js';
