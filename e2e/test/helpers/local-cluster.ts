// Root cluster tests: the tag and the cluster (its code in e2e/src/cluster, shared with the chaos runner).
import test from 'ava';
import { requires } from '@swarmd/testkit';
import { findSwarmd } from '@swarmd/cli/local/swarmd';

export * from '../../src/cluster/local-cluster.js';

/** Root tests that need a built swarmd (skipped while it is not built; never skipped under CI). */
export const clusterTest = (() => {
  try {
    findSwarmd(process.env);
  } catch {
    if (process.env.CI !== 'true') return test.skip;
  }
  return requires('root', 'netns', 'runc', 'conmon', 'registry');
})();
