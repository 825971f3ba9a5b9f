export * from './credentials.js';
export * from './ca-server.js';
