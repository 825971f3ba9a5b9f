export * from './controller.js';
export * from './watch-loop.js';
export * from './service-queue.js';
export * from './service-loop.js';
export * from './task.js';
export * from './task-writes.js';
export * from './dirty.js';
export * from './heap.js';
