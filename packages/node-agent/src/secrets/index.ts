export * from './task-files.js';
