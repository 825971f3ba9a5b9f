export * from './task-reaper.js';
