export * from './restart-policy.js';
