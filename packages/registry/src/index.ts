// References and digests (what names an image), media types, and the registry v2 client.
export * from './reference.js';
export * from './digest.js';
export * from './media-types.js';
export * from './auth.js';
export * from './http.js';
export * from './client.js';
