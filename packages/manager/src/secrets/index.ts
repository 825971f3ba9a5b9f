export * from './sealed.js';
export * from './key-file.js';
