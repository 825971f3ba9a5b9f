// The public API of raft-ts.
export * from './types.js';
export { createRawNode } from './raw-node.js';
export { MemoryStorage, SnapshotOutOfDateError, type MemoryStorageOptions } from './storage/memory-storage.js';
// Durability, transport, the driver and the KV example.
export { Wal, WalCorruptError, type WalOptions, type WalState, type SnapshotMarker } from './durable/wal.js';
export { DiskWriteError, isRetryableDiskError, type DiskRetry } from './durable/disk-errors.js';
export { SnapshotFiles, SnapshotCorruptError, type SnapshotFilesOptions } from './durable/snapshot-files.js';
export { GrpcTransport, bindServer, createRaftServer, RAFT_GRPC_OPTIONS, type SenderCheck, type TransportHandler, type TransportOptions, type TransportStats } from './transport/grpc-transport.js';
export {
  RaftNode,
  NotCaughtUpError,
  RaftNodeStoppedError,
  TimeoutError,
  type StateMachine,
  type RaftNodeOptions,
  type NodeStatus,
  type LeaderChange,
} from './driver/raft-node.js';
export { KvStateMachine, KV_REMEMBERED_REQUESTS } from './kv/kv-state-machine.js';
export { addKvService, LEADER_ID_KEY, LEADER_ADDR_KEY, OUTCOME_KEY } from './kv/kv-server.js';
export { KvClusterClient, type KvClusterClientOptions } from './kv/kv-client.js';
