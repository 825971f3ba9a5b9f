export * from './sealed.js';
export * from './key-file.js';
export * from './unlock-key.js';
export * from './autolock.js';
export * from './tls-key.js';
