/**
 * Tests that need root, runc, network namespaces or a Debian tool say so:
 *
 *   const rootTest = requires('root', 'netns');
 *   rootTest('two hosts reach each other', async (t) => { ... });
 *
 * The test's title gets a `[root]`-style tag. Where a need is missing it is skipped locally, but
 * never under CI (CI=true), where everything must run: a missing tool then fails the test.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import test, { type TestFn } from 'ava';

export type Need = 'root' | 'netns' | 'runc' | 'conmon' | 'registry' | 'skopeo' | 'etcd' | 'etcdctl' | 'nft' | 'conntrack' | 'busybox' | 'dockerd';

const tools: Partial<Record<Need, string>> = {
  runc: 'runc',
  conmon: 'conmon',
  registry: 'docker-registry',
  skopeo: 'skopeo',
  etcd: 'etcd',
  etcdctl: 'etcdctl',
  nft: 'nft',
  conntrack: 'conntrack',
  netns: 'ip',
  busybox: 'busybox',
  dockerd: 'dockerd',
};

function onPath(cmd: string): boolean {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function missingNeeds(needs: readonly Need[]): Need[] {
  const isRoot = process.getuid?.() === 0;
  return needs.filter((n) => {
    if (n === 'root' || n === 'netns') if (!isRoot) return true;
    const tool = tools[n];
    return tool !== undefined && !onPath(tool);
  });
}

export function requires(...needs: Need[]): TestFn {
  const missing = missingNeeds(needs);
  const tag = `[${needs.join(',')}]`;
  const base = (needs.includes('root') || needs.includes('netns') ? test.serial : test) as TestFn;
  const pick = missing.length && process.env.CI !== 'true' ? base.skip : base;
  const tagged = ((title: string, ...rest: unknown[]) =>
    (pick as (t: string, ...r: unknown[]) => void)(`${tag} ${title}`, ...rest)) as unknown as TestFn;
  return Object.assign(tagged, base);
}
