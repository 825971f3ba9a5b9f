export * from './media-types.js';
export * from './auth.js';
export * from './http.js';
export * from './client.js';
