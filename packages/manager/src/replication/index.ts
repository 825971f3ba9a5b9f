export * from './replicated-log.js';
export * from './local-log.js';
export * from './raft-log.js';
export * from './etcd-log.js';
