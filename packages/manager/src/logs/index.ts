export * from './log-broker.js';
