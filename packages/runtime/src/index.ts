// Images (content store, unpack, image service); references and the registry client are @swarmd/registry's
export * from './content/index.js';
export * from './images/index.js';
// Containers (snapshots, OCI bundles, runc, conmon, volumes)
export * from './containers/index.js';
