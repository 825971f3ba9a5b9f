// The public API of raft-ts.
export * from './types.js';
export { createRawNode } from './raw-node.js';
export { MemoryStorage, SnapshotOutOfDateError, type MemoryStorageOptions } from './storage/memory-storage.js';
