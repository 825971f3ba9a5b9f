// @swarmd/proto: every cluster message and service, generated from proto/swarm by
// scripts/gen-proto.sh (protoc + ts-proto). Never hand-write a duplicate of these types.
export * from './gen/swarm/types.js';
export * from './gen/swarm/specs.js';
export * from './gen/swarm/objects.js';
export * from './gen/swarm/store.js';
export * from './gen/swarm/control.js';
export * from './gen/swarm/dispatcher.js';
export * from './gen/swarm/ca.js';
export * from './gen/swarm/raft_membership.js';
