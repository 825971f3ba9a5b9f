export * from './start-manager.js';
export * from './services.js';
export * from './node-certs.js';
export * from './auth.js';
export * from './tls.js';
export * from './api.js';
export * from './controllers.js';
export * from './store-backend.js';
