// Images (content store, unpack, image service); references and the registry client are @swarmd/registry's
export * from './content/index.js';
export * from './images/index.js';
// Snapshots: unpacked layers (by chain id) and containers' overlay dirs
export * from './snapshots/index.js';
// Containers (mounts, OCI bundles, runc, conmon, volumes)
export * from './containers/index.js';
