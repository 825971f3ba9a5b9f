// Root cluster tests: the tag and the cluster (its code in e2e/src/cluster, shared with the chaos runner).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext, type TestFn } from 'ava';
import { requires, type Need } from '@swarmd/testkit';
import { findSwarmd } from '@swarmd/cli/local/swarmd';
import { startLocalCluster, type LocalCluster, type Scope } from '../../src/cluster/local-cluster.js';

export * from '../../src/cluster/local-cluster.js';

/** What a cluster needs of a test: a test's ExecutionContext, or sharedLocalCluster's stand-in. */
export type Harness = Scope;

/** Root tests that need a built swarmd (skipped while it is not built; never skipped under CI), and `extra` needs. */
export function clusterTestWith(...extra: Need[]): TestFn {
  try {
    findSwarmd(process.env);
  } catch {
    if (process.env.CI !== 'true') return test.skip as unknown as TestFn;
  }
  return requires('root', 'netns', 'runc', 'conmon', 'registry', ...extra);
}

/** Root tests that need a built swarmd (skipped while it is not built; never skipped under CI). */
export const clusterTest = clusterTestWith();

/**
 * One cluster for the serial tests of a file that only probe it (or change what the next tests
 * do not depend on): brought up by the first test that asks, `local down` after the last
 * (test.after.always), with the hosts' logs printed when any test that used it failed.
 */
export function sharedLocalCluster(name: string, net: string, managers: number, workers: number): (t: ExecutionContext) => Promise<LocalCluster> {
  const teardowns: (() => unknown)[] = [];
  let failed = false;
  const logs: string[] = [];
  const harness: Harness = {
    teardown: (fn) => void teardowns.push(fn),
    get passed() {
      return !failed;
    },
    log: (...values: unknown[]) => void logs.push(values.map(String).join(' ')),
  };
  let cluster: Promise<LocalCluster> | undefined;
  test.after.always(async (t) => {
    for (const fn of teardowns.reverse()) await fn();
    for (const l of logs) t.log(l);
  });
  return async (t) => {
    t.teardown(() => {
      if (!t.passed) failed = true;
    });
    cluster ??= startLocalCluster(harness, name, net, managers, workers);
    return cluster;
  };
}

/** A host of a local cluster as its state file (DIR/cluster.json) records it. */
export interface HostState {
  name: string;
  veth: string;
  listenAddr: string;
  stateDir: string;
  pid?: number;
}

/** A host (m1, w2...) from the cluster's state file. */
export async function hostOf(c: LocalCluster, host: string): Promise<HostState> {
  const state = JSON.parse(await readFile(join(c.dir, 'cluster.json'), 'utf8')) as { hosts: HostState[] };
  const h = state.hosts.find((x) => x.name === host);
  if (!h) throw new Error(`no host ${host} in ${c.dir}/cluster.json`);
  return h;
}
