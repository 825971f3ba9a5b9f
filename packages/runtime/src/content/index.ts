export * from './single-flight.js';
export * from './content-store.js';
