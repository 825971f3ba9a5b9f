/**
 * What must hold on a local cluster once a fault has healed. Each check returns the problems it
 * found, each naming what is wrong (empty: it holds); `converge` polls them all until none is left
 * or a stated bound passes, and then fails with the last problems.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import { NFT } from '@swarmd/node-agent';
import { taskNetns } from '@swarmd/node-agent/networking/bridge-network';
import type { LocalHost } from '@swarmd/cli/local/state';
import { RUNNING, type LocalCluster, type NodeJson, type TaskJson } from '../cluster/local-cluster.js';
import { FAULT_TABLE_PREFIX, inNetns } from '../faults/faults.js';
import type { Ledger } from './ledger.js';

interface ServiceJson {
  id: string;
  spec?: { annotations?: { name?: string }; replicated?: { replicas?: number }; global?: object; task?: { container?: { env?: string[] } } };
}
interface StoreTask extends TaskJson {
  serviceId?: string;
}

/** One read of the store through the control API. */
export interface Snapshot {
  services: ServiceJson[];
  tasks: StoreTask[];
  nodes: NodeJson[];
}

export async function snapshot(c: LocalCluster): Promise<Snapshot> {
  const [services, tasks, nodes] = [
    JSON.parse(await c.ok('service', 'ls', '--format', 'json')) as ServiceJson[],
    JSON.parse(await c.ok('task', 'ls', '--format', 'json')) as StoreTask[],
    JSON.parse(await c.ok('node', 'ls', '--format', 'json')) as NodeJson[],
  ];
  return { services, tasks, nodes };
}

const nameOf = (s: ServiceJson) => s.spec?.annotations?.name ?? s.id;
const versionOf = (env: readonly string[] | undefined) => env?.find((e) => e.startsWith('V='))?.slice(2);
const allowed = <T>(f: { acked?: T; maybe: T[] }) => [...(f.acked !== undefined ? [f.acked] : []), ...f.maybe];

/** Every acknowledged create, scale and update is in the store (or a later one whose outcome is unknown). */
export function acknowledgedWrites(s: Snapshot, ledger: Ledger): string[] {
  const out: string[] = [];
  for (const rec of ledger.services.values()) {
    const svc = s.services.find((x) => nameOf(x) === rec.name);
    if (!svc) {
      if (rec.created) out.push(`service ${rec.name}: its create was acknowledged but it is not in the store`);
      continue;
    }
    const replicas = svc.spec?.replicated?.replicas ?? 0;
    const okReplicas = allowed(rec.replicas);
    if (rec.mode === 'replicated' && okReplicas.length && !okReplicas.includes(replicas)) {
      out.push(`service ${rec.name}: ${replicas} replicas in the store, but the last acknowledged scale was ${rec.replicas.acked ?? 'none'}${rec.replicas.maybe.length ? ` (unknown outcome since: ${rec.replicas.maybe.join(', ')})` : ''}`);
    }
    const version = versionOf(svc.spec?.task?.container?.env);
    const okVersions = allowed(rec.version);
    if (okVersions.length && !okVersions.includes(version ?? '')) {
      out.push(`service ${rec.name}: V=${version ?? '(unset)'} in the store, but the last acknowledged update set V=${rec.version.acked ?? 'none'}${rec.version.maybe.length ? ` (unknown outcome since: ${rec.version.maybe.join(', ')})` : ''}`);
    }
  }
  return out;
}

const isReady = (n: NodeJson) => n.status?.state === 'NODE_STATE_READY' && (n.spec?.availability ?? 'NODE_AVAILABILITY_ACTIVE') === 'NODE_AVAILABILITY_ACTIVE';

/**
 * A replicated service of N replicas has N slots with exactly one running task each, each global service one
 * per ready node, and each running task runs the service's current spec (V).
 */
export function slots(s: Snapshot): string[] {
  const out: string[] = [];
  const hostOf = (id: string | undefined) => s.nodes.find((n) => n.id === id)?.description?.hostname ?? id ?? '(no node)';
  for (const svc of s.services) {
    const name = nameOf(svc);
    const running = s.tasks.filter((t) => t.serviceId === svc.id && t.status?.state === RUNNING);
    const want = versionOf(svc.spec?.task?.container?.env);
    for (const t of running) {
      if (t.desiredState !== RUNNING) out.push(`service ${name}: task ${t.id} still running although desired ${t.desiredState}`);
      else if (versionOf(t.spec?.container?.env) !== want) out.push(`service ${name}: task ${t.id} runs V=${versionOf(t.spec?.container?.env)}, the service wants V=${want}`);
    }
    if (svc.spec?.global) {
      for (const n of s.nodes.filter(isReady)) {
        const here = running.filter((t) => t.nodeId === n.id).length;
        if (here !== 1) out.push(`global service ${name}: ${here} running tasks on ready node ${hostOf(n.id)} (want 1)`);
      }
      continue;
    }
    const replicas = svc.spec?.replicated?.replicas ?? 0;
    const bySlot = new Map<number, number>();
    for (const t of running) bySlot.set(t.slot ?? 0, (bySlot.get(t.slot ?? 0) ?? 0) + 1);
    // As in Swarm, a scale-down may leave any slots (not 1..N): N slots, one running task each.
    for (const [slot, n] of bySlot) if (n !== 1 || slot < 1) out.push(`service ${name}: slot ${slot} has ${n} running tasks (want 1)`);
    if (bySlot.size !== replicas) out.push(`service ${name}: ${bySlot.size} slots with a running task (${[...bySlot.keys()].sort((a, b) => a - b).join(', ') || 'none'}), want ${replicas}`);
  }
  return out;
}

/** What a host holds in the kernel and on disk for tasks. */
export interface HostFacts {
  /** runc containers: id → status. */
  containers: Map<string, string>;
  /** Mount points under the state dir (the state dir's own tmpfs excluded). */
  mounts: string[];
  /** Network namespaces named for this node's tasks. */
  netns: string[];
  /** nft tables in the host's netns. */
  tables: string[];
  /** Container cgroups (memory hierarchy) under the runtime's parent. */
  cgroups: string[];
}

async function listDir(d: string): Promise<string[]> {
  return (await readdir(d, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => e.name);
}

export async function hostFacts(h: LocalHost, nodeId: string): Promise<HostFacts> {
  const runtime = resolve(h.stateDir, 'runtime');
  const list = await run('runc', ['--root', join(runtime, 'runc'), 'list', '--format', 'json']).catch(() => ({ stdout: 'null' }));
  const containers = new Map(((JSON.parse(list.stdout || 'null') as { id: string; status: string }[] | null) ?? []).map((x) => [x.id, x.status]));
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${h.stateDir}/`));
  const prefix = taskNetns(nodeId, '').netns.split('-')[0] + '-';
  const netns = (await run('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(prefix));
  const tables = (await inNetns(h, [NFT, 'list', 'tables'])).stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const instance = createHash('sha256').update(runtime).digest('hex').slice(0, 10);
  const cgroups = await listDir(join('/sys/fs/cgroup/memory', `swarmd-${instance}`));
  return { containers, mounts, netns, tables, cgroups };
}

/**
 * Nothing on a host that the store does not explain: every container, mount, task netns and
 * container cgroup belongs to a task of the store on that node (a running container to one
 * desired running), and the host's netns has only swarmd's own nft tables.
 */
export function orphans(host: string, nodeId: string, facts: HostFacts, s: Snapshot, o: CheckOptions = {}): string[] {
  const out: string[] = [];
  const mine = s.tasks.filter((t) => t.nodeId === nodeId);
  const byId = new Map(mine.map((t) => [t.id, t]));
  for (const [id, status] of facts.containers) {
    const t = byId.get(id);
    if (!t) out.push(`${host}: container ${id} (${status}) belongs to no task of this node in the store`);
    else if (status === 'running' && t.desiredState !== RUNNING) out.push(`${host}: container ${id} runs although its task is desired ${t.desiredState}`);
  }
  for (const m of facts.mounts) if (![...byId.keys()].some((id) => m.includes(`/${id}/`) || m.endsWith(`/${id}`))) out.push(`${host}: mount ${m} belongs to no task of this node in the store`);
  const netnsOf = new Set(mine.map((t) => taskNetns(nodeId, t.id).netns));
  for (const n of facts.netns) if (!netnsOf.has(n)) out.push(`${host}: network namespace ${n} belongs to no task of this node in the store`);
  for (const tb of facts.tables) if (!/^table (ip|inet|ip6|bridge) swarmd_\S+$/.test(tb) && !(o.faultsOn && tb.startsWith(`table inet ${FAULT_TABLE_PREFIX}`))) out.push(`${host}: nft ${tb} is not swarmd's (a fault left over?)`);
  for (const cg of facts.cgroups) if (!byId.has(cg)) out.push(`${host}: cgroup ${cg} belongs to no task of this node in the store`);
  return out;
}

export interface CheckOptions {
  /** A fault is still on (a check under it): its nft tables are expected. */
  faultsOn?: boolean;
}

/**
 * What a run wrote, to check against a read of the store: a Ledger (one write at a time), or a
 * function listing what the read breaks (the Jepsen checker over a history of concurrent clients).
 */
export type Written = Ledger | ((s: Snapshot) => string[]);

/** Every problem on the cluster now: acknowledged writes, slots, and each host's orphans. */
export async function problems(c: LocalCluster, written: Written, o: CheckOptions = {}): Promise<string[]> {
  const s = await snapshot(c);
  const out = [...(typeof written === 'function' ? written(s) : acknowledgedWrites(s, written)), ...slots(s)];
  for (const h of await c.hosts()) {
    const node = s.nodes.find((n) => n.description?.hostname === h.hostname);
    if (!node) {
      out.push(`host ${h.name}: no node ${h.hostname} in the store`);
      continue;
    }
    if (node.status?.state !== 'NODE_STATE_READY') out.push(`host ${h.name}: node ${h.hostname} is ${node.status?.state}, not ready`);
    out.push(...orphans(h.name, node.id, await hostFacts(h, node.id), s, o));
  }
  return out;
}

/**
 * Polls `problems` until there are none in two reads 3 s apart (a state that holds, not a moment
 * before a late event such as a node marked down); returns how long after the call the first of
 * those reads was. Fails after `boundS` seconds naming what was still wrong.
 */
export async function converge(c: LocalCluster, written: Written, boundS: number, o: CheckOptions = {}): Promise<number> {
  const started = Date.now();
  let last: string[] = [];
  let clean: number | undefined;
  while (Date.now() - started < boundS * 1000) {
    const at = Date.now();
    try {
      last = await problems(c, written, o);
    } catch (e) {
      last = [`the control API failed: ${(e as Error).message.split('\n')[0]}`];
    }
    if (last.length) clean = undefined;
    else if (clean === undefined) clean = at;
    else if (at - clean >= 3000) return clean - started;
    await sleep(last.length ? 1000 : 3000);
  }
  throw new Error(`the cluster did not converge within ${boundS} s:\n  ${last.join('\n  ')}`);
}
