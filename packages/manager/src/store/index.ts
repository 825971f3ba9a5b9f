export * from './kinds.js';
export * from './selectors.js';
export * from './events.js';
export * from './memory-store.js';
export type { Change, ChangeOp } from './overlay.js';
