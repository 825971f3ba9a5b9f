export * from './layer-snapshots.js';
export * from './overlay-snapshotter.js';
