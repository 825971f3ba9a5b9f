export * from './ipam.js';
