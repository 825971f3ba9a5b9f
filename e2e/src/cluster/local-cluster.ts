// A real local cluster for a test (or the chaos runner) (swarmd processes in network namespaces, containers under
// runc), driven through swarmctl in-process, and removed by `local down` when the test ends.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { swarmctl, type CliResult } from '@swarmd/cli/testing';
import type { LocalClusterState, LocalHost } from '@swarmd/cli/local/state';
import { run } from '@swarmd/common';

/**
 * What a cluster needs of its caller: an ava ExecutionContext fits, and so does the chaos
 * runner's own scope. Teardowns run last-registered first.
 */
export interface Scope {
  teardown(fn: () => void | Promise<void>): void;
  readonly passed: boolean;
  log(...values: unknown[]): void;
}

export interface TaskJson {
  id: string;
  serviceId?: string;
  slot?: number;
  nodeId?: string;
  desiredState?: string;
  status?: { state?: string; err?: string; message?: string; container?: { exitCode?: number; pid?: number; health?: string } };
  spec?: { container?: { image?: string; env?: string[] } };
}
export interface NodeJson {
  id: string;
  role?: string;
  description?: { hostname?: string };
  status?: { state?: string };
  spec?: { availability?: string; desiredRole?: string; annotations?: { labels?: Record<string, string> } };
  certificatePem?: string;
  managerStatus?: { leader?: boolean; reachability?: string; problem?: string };
}

export const RUNNING = 'TASK_STATE_RUNNING';

export interface LocalCluster {
  name: string;
  /** The cluster's dir (state file, host state dirs, logs). */
  dir: string;
  /** What `local up` printed. */
  upOutput: string;
  /** The context file swarmctl uses (every manager's control socket). */
  contextPath: string;
  /** First three octets of the /24 underlay. */
  net: string;
  /** The demo image in the cluster's registry. */
  image: string;
  ctl: (...args: string[]) => Promise<CliResult>;
  /** swarmctl with `input` on its stdin. */
  ctlIn: (input: string, ...args: string[]) => Promise<CliResult>;
  /** swarmctl that must succeed; its stdout. */
  ok: (...args: string[]) => Promise<string>;
  tasks: (svc: string) => Promise<TaskJson[]>;
  /** Tasks desired and observed RUNNING. */
  running: (svc: string) => Promise<TaskJson[]>;
  nodes: () => Promise<NodeJson[]>;
  /** Node id of a local host (m1, w2...). */
  nodeOf: (host: string) => Promise<string>;
  /** The node of a local host (m1, w2...), if listed. */
  byHost: (host: string) => Promise<NodeJson | undefined>;
  /** Polls `cond` every 250 ms for up to `seconds`; fails naming `what`. */
  until: (what: string, cond: () => Promise<boolean>, seconds?: number) => Promise<void>;
  /** The hosts as `local` keeps them in cluster.json now (pids change on a restart). */
  hosts: () => Promise<LocalHost[]>;
  host: (name: string) => Promise<LocalHost>;
}

export interface ClusterOptions {
  /** Wait until no other file's cluster runs (tests that count lost requests). */
  exclusive?: boolean;
  /** Hosts (m1, w2...) whose state dir is a small tmpfs, to be filled by the full-disk fault. */
  tmpfsStateDirs?: string[];
  /** Size of each of those tmpfs (default 256 MiB: images, containers and Raft data fit). */
  tmpfsMiB?: number;
  /** More `local up` flags, e.g. --store etcd. */
  upArgs?: string[];
  /** More environment for swarmctl and the processes it starts (every host's swarmd). */
  env?: NodeJS.ProcessEnv;
}

/** Held by every cluster test: shared, or exclusive for those that measure loss under load. */
const CLUSTER_LOCK = join(tmpdir(), 'swarmd-e2e-clusters.lock');

/**
 * How many local clusters may run at once across the test files (ava runs two files at once and
 * every test of a file at once: local-networks alone would start 10 clusters, 30 swarmd on a
 * 2-core machine, whose starvation made timeouts of their own).
 */
const CLUSTER_SLOTS = Math.max(1, Number(process.env.SWARMD_E2E_CLUSTERS) || 4);

/** Runs `flock` in a child that holds the lock until the test ends; false when `-n` found it taken. */
async function holdFlock(t: Scope, args: string[], file: string): Promise<boolean> {
  const child = spawn('flock', ['--no-fork', ...args, file, '-c', 'echo locked; exec sleep 100000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got = await new Promise<boolean>((resolve, reject) => {
    child.stdout.once('data', () => resolve(true));
    child.once('exit', (code) => (code === 1 && args.includes('-n') ? resolve(false) : reject(new Error(`flock ${file} exited (${code}) before taking the lock`))));
  });
  if (got) {
    t.teardown(() => {
      child.kill('SIGKILL');
    });
  }
  return got;
}

/**
 * Takes the cluster lock (flock(1), held by a child process until the test ends): shared by
 * default; `exclusive` waits until no other test's cluster runs, for the tests that count lost
 * requests under a steady load, which CPU starvation by another cluster on a 2-core machine
 * makes fail for reasons of its own (README: known weakness). Then one of CLUSTER_SLOTS slots.
 */
async function takeClusterLock(t: Scope, exclusive: boolean): Promise<void> {
  await holdFlock(t, [exclusive ? '-x' : '-s'], CLUSTER_LOCK);
  for (;;) {
    for (let k = 0; k < CLUSTER_SLOTS; k++) if (await holdFlock(t, ['-n', '-x'], `${CLUSTER_LOCK}.slot${k}`)) return;
    await sleep(500 + Math.random() * 500);
  }
}

/** Brings up a local cluster named `name` on `${net}.0/24`; `local down` runs at teardown. */
export async function startLocalCluster(t: Scope, name: string, net: string, managers: number, workers: number, o: ClusterOptions = {}): Promise<LocalCluster> {
  const asked = Date.now();
  await takeClusterLock(t, o.exclusive ?? false);
  const granted = Date.now();
  const root = await mkdtemp(join(tmpdir(), `swl-${name}-`));
  const env = { ...o.env, SWARMD_LOCAL_ROOT: root, PATH: process.env.PATH, SWARMCTL_CONTEXT: join(root, 'ctx.json'), SWARMD_BIN: o.env?.SWARMD_BIN ?? process.env.SWARMD_BIN };
  const dir = join(root, name);
  t.teardown(async () => {
    if (!t.passed) {
      // the hosts' last log lines, to see why in the test output
      for (const f of (await readdir(dir).catch(() => [])).filter((x) => x.endsWith('.log'))) {
        const lines = (await readFile(join(dir, f), 'utf8').catch(() => '')).trimEnd().split('\n').slice(-20).join('\n');
        if (lines) t.log(`--- ${f}\n${lines}`);
      }
    }
    await swarmctl(['local', 'down', '--name', name], env);
    await rm(root, { recursive: true, force: true });
  });
  // Small tmpfs state dirs (before `local up` makes the dirs: it keeps an existing empty one);
  // `local down` unmounts everything under the cluster dir.
  for (const h of o.tmpfsStateDirs ?? []) {
    const d = join(dir, h);
    await mkdir(d, { recursive: true, mode: 0o700 });
    await run('mount', ['-t', 'tmpfs', '-o', `size=${o.tmpfsMiB ?? 256}m,mode=0700`, 'tmpfs', d]);
  }
  const ctl = async (...args: string[]): Promise<CliResult> => swarmctl(args, env);
  const ok = async (...args: string[]): Promise<string> => {
    const r = await ctl(...args);
    if (r.code !== 0) throw new Error(`swarmctl ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const upStart = Date.now();
  const up = await ctl('local', 'up', '--name', name, '--managers', String(managers), '--workers', String(workers), '--subnet', `${net}.0/24`, '--timeout', '240', ...(o.upArgs ?? []));
  // What CI time goes to: the wait for the lock and a slot, and `local up`.
  t.log(`cluster ${name}: waited ${((granted - asked) / 1000).toFixed(1)} s for the lock and a slot, up in ${((Date.now() - upStart) / 1000).toFixed(1)} s`);
  if (up.code !== 0) throw new Error(`local up: ${up.stderr}${up.stdout}`);
  const tasks = async (svc: string) => JSON.parse(await ok('service', 'ps', svc, '--format', 'json')) as TaskJson[];
  const nodes = async () => JSON.parse(await ok('node', 'ls', '--format', 'json')) as NodeJson[];
  const byHost = async (host: string) => (await nodes()).find((x) => x.description?.hostname === `${name}-${host}`);
  return {
    name,
    dir,
    upOutput: up.stdout,
    contextPath: env.SWARMCTL_CONTEXT,
    net,
    image: `${net}.1:5000/demo/web:latest`,
    ctl,
    ctlIn: (input, ...args) => swarmctl(args, env, input),
    ok,
    tasks,
    running: async (svc) => (await tasks(svc)).filter((x) => x.desiredState === RUNNING && x.status?.state === RUNNING),
    nodes,
    byHost,
    nodeOf: async (host) => {
      const n = await byHost(host);
      if (!n) throw new Error(`no node for host ${host}`);
      return n.id;
    },
    hosts: async () => (JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as LocalClusterState).hosts,
    host: async (h) => {
      const found = (JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as LocalClusterState).hosts.find((x) => x.name === h);
      if (!found) throw new Error(`local cluster ${name} has no host ${h}`);
      return found;
    },
    until: async (what, cond, seconds = 60) => {
      const end = Date.now() + seconds * 1000;
      let last: Error | undefined;
      while (Date.now() < end) {
        try {
          if (await cond()) return;
        } catch (e) {
          last = e instanceof Error ? e : new Error(JSON.stringify(e));
        }
        await sleep(250);
      }
      throw new Error(`timed out after ${seconds} s waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    },
  };
}

/** How many of `tasks` each node runs. */
export function perNode(tasks: readonly TaskJson[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of tasks) m.set(x.nodeId ?? '', (m.get(x.nodeId ?? '') ?? 0) + 1);
  return m;
}
