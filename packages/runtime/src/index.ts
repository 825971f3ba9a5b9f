// Images (reference, registry client, content store, image service)
export * from './reference/index.js';
export * from './content/index.js';
export * from './registry/index.js';
export * from './images/index.js';
// Containers (snapshots, OCI bundles, runc, conmon, volumes)
export * from './containers/index.js';
