/** The real core, as the simulation runs it. */
import { createRawNode } from '../raw-node.js';
import { MemoryStorage } from '../storage/memory-storage.js';
import type { SimCore } from './sim.js';

export const realCore: SimCore = {
  createRawNode,
  createStorage: (confState) => new MemoryStorage(confState ? { confState } : {}),
};
