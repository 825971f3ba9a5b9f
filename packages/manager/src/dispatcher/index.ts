export * from '../rpc-kit/index.js';
export * from './batcher.js';
export * from './dispatcher.js';
export * from './publish-logs.js';
export * from './network-state.js';
