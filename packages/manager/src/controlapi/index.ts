export * from './control.js';
export * from './api.js';
