export * from './teardown.js';
export * from './requires.js';
export * from './images.js';
export * from './registry.js';
export * from './hosts.js';
export * from './processes.js';
export * from './etcd.js';
export * from './pki.js';
