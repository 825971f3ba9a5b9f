export * from './raft-dir.js';
