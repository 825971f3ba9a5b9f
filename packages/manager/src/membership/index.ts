export * from './quorum.js';
export * from './membership.js';
export * from './controllers.js';
export * from './join-client.js';
export * from './etcd-membership.js';
