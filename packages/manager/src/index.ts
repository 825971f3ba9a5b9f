export * from './store/index.js';
export * from './replication/index.js';
export * from './watch/watch-queue.js';
export * from './ca/index.js';
export * from './ids.js';
export * from './dispatcher/index.js';
export * from './caserver/index.js';
export * from './controlapi/index.js';
