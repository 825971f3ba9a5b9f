export * from './config.js';
export * from './certs.js';
export * from './daemon.js';
