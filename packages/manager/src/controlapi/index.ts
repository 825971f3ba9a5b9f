export * from './control.js';
export * from './api.js';
export * from './services.js';
export * from './logs.js';
