export * from './raft-dir.js';
export * from './sender-check.js';
