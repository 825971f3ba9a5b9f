export * from './controller-host.js';
