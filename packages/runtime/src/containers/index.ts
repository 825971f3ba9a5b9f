// Containers: mounts, OCI specs, runc, conmon, volumes and the container service.
export * from '../mount/mount.js';
export * from '../mount/mounter.js';
export * from '../oci/types.js';
export * from '../oci/user.js';
export * from '../oci/rootfs-path.js';
export * from '../oci/spec-builder.js';
export * from '../runc/runc-cli.js';
export * from '../monitor/conmon.js';
export * from '../volumes/volume-store.js';
export * from './cgroups.js';
export * from './logs.js';
export * from './container-types.js';
export * from './container-service.js';
