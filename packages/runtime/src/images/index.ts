export * from './manifest.js';
export * from './image-store.js';
export * from './unpack.js';
export * from './image-service.js';
