import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument } from '@swarmd/common/errors';

/** Where local clusters live: $SWARMD_LOCAL_ROOT or /var/lib/swarmd-local; one dir per name. */
export function localRoot(env: NodeJS.ProcessEnv): string {
  return env.SWARMD_LOCAL_ROOT || '/var/lib/swarmd-local';
}

export function validateName(name: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,23}$/.test(name)) throw invalidArgument(`--name ${name}: use 1-24 of a-z, 0-9 and -, starting with a letter or digit`);
  return name;
}

/**
 * Kernel names of a cluster, derived from its name alone so `down` can find them without the
 * state file. Link names must fit 15 bytes: swl + 5 hex of the name's hash + role suffix.
 */
export function kernelNames(name: string) {
  const h = createHash('sha256').update(name).digest('hex').slice(0, 5);
  return {
    bridge: `swl${h}br`,
    veth: (i: number) => `swl${h}v${i}`,
    netns: (host: string) => `swl-${name}-${host}`,
    netnsPrefix: `swl-${name}-`,
  };
}

export interface LocalHost {
  /** m1, m2, w1... */
  name: string;
  hostname: string;
  role: 'manager' | 'worker';
  netns: string;
  veth: string;
  addr: string;
  listenAddr: string;
  stateDir: string;
  log: string;
  pid?: number;
}

export interface LocalClusterState {
  name: string;
  dir: string;
  subnet: string;
  gateway: string;
  bridge: string;
  forwardRule: boolean;
  registry?: { addr: string; dir: string; log: string; pid?: number };
  hosts: LocalHost[];
  contextPath?: string;
  createdAt: string;
  /** up finished: every node was READY. */
  ready: boolean;
  /** `--store etcd`: the cluster's store is this external etcd (the managers reach it from their netns). */
  etcdEndpoints?: string[];
}

export const stateFile = (dir: string) => join(dir, 'cluster.json');

export async function saveState(s: LocalClusterState): Promise<void> {
  await mkdir(s.dir, { recursive: true });
  const tmp = `${stateFile(s.dir)}.tmp`;
  await writeFile(tmp, JSON.stringify(s, null, 2) + '\n');
  await rename(tmp, stateFile(s.dir));
}

export async function loadState(dir: string): Promise<LocalClusterState | undefined> {
  try {
    return JSON.parse(await readFile(stateFile(dir), 'utf8')) as LocalClusterState;
  } catch {
    return undefined;
  }
}

/** Every local cluster under the root (dirs with a state file). */
export async function listStates(root: string): Promise<LocalClusterState[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const out: LocalClusterState[] = [];
  for (const n of names.sort()) {
    const s = await loadState(join(root, n));
    if (s) out.push(s);
  }
  return out;
}
