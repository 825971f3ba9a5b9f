/**
 * The hosts of a local cluster after `up`: add more (they join with the cluster's tokens), stop
 * one (its swarmd; with `kill`, the whole host as in a power loss: every process in its network
 * namespace, containers included) and start it again (swarmd resumes from its state dir). What a
 * developer does to see how services behave when nodes come and go.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, invalidArgument, notFound, unavailable } from '@swarmd/common/errors';
import { NodeState } from '@swarmd/proto/gen/swarm/types';
import { type Node } from '@swarmd/proto/gen/swarm/objects';
import { socketConnection } from '../client/connection.js';
import { connectControl, theCluster, type Control } from '../client/control-client.js';
import { readContext, writeContext } from '../client/context.js';
import { nodeName } from '../format.js';
import { addHost, netnsPath } from './underlay.js';
import { parseSubnet } from './subnet.js';
import { kernelNames, loadState, localRoot, saveState, validateName, type LocalClusterState, type LocalHost } from './state.js';
import { cleanupHost, findSwarmd, spawnInNetns } from './swarmd.js';
import { clusterProcesses, isAlive, terminate, waitGone } from './processes.js';

export const SWARMD_PORT = 4242;

export function controlSocket(h: LocalHost): string {
  return join(h.stateDir, 'control.sock');
}

export function unixControl(sock: string): Control {
  return connectControl(socketConnection(sock, sock), 5_000);
}

/**
 * The next host of a role: m<k> or w<k> numbered after the existing ones, the next free address
 * of the subnet and the next veth index (both by position, so `down` finds them from the names).
 */
export function planHost(state: LocalClusterState, role: 'manager' | 'worker'): LocalHost {
  const subnet = parseSubnet(state.subnet);
  const index = state.hosts.length;
  if (index + 1 > Math.min(64, subnet.capacity)) throw invalidArgument(`no room for another host on ${state.subnet} (at most ${Math.min(64, subnet.capacity)})`);
  const prefix = role === 'manager' ? 'm' : 'w';
  const taken = state.hosts.filter((h) => h.name.startsWith(prefix)).map((h) => Number(h.name.slice(1)));
  const hn = `${prefix}${Math.max(0, ...taken) + 1}`;
  const addr = subnet.hostAddr(index);
  const names = kernelNames(state.name);
  return {
    name: hn,
    hostname: `${state.name}-${hn}`,
    role,
    netns: names.netns(hn),
    veth: names.veth(index + 1),
    addr,
    listenAddr: `${addr}:${SWARMD_PORT}`,
    stateDir: join(state.dir, hn),
    log: join(state.dir, `${hn}.log`),
  };
}

/** Makes the host's netns and state dir on the cluster's underlay bridge. */
export async function wireHost(state: LocalClusterState, h: LocalHost): Promise<void> {
  await addHost(state.bridge, h, parseSubnet(state.subnet).prefixLen);
  await mkdir(h.stateDir, { recursive: true, mode: 0o700 });
}

/** Docker's metrics port: every local host serves Prometheus metrics on ADDR:9323. */
export const LOCAL_METRICS_PORT = 9323;

export function metricsAddrOf(h: LocalHost): string {
  return `${h.addr}:${LOCAL_METRICS_PORT}`;
}

/** swarmd flags every local host is started with. */
export function hostArgs(state: LocalClusterState, h: LocalHost): string[] {
  return [
    '--state-dir',
    h.stateDir,
    '--listen-addr',
    h.listenAddr,
    '--advertise-addr',
    h.listenAddr,
    '--hostname',
    h.hostname,
    '--metrics-addr',
    metricsAddrOf(h),
    ...(state.registry ? ['--insecure-registry', state.registry.addr] : []),
  ];
}

async function tail(file: string, lines = 15): Promise<string> {
  const t = await readFile(file, 'utf8').catch(() => '');
  return t.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Dies with the host's log tail when its swarmd is gone. */
export async function checkAlive(h: LocalHost): Promise<void> {
  if (!isAlive(h.pid)) throw unavailable(`swarmd on ${h.name} (${h.addr}) exited; last lines of ${h.log}:\n${await tail(h.log)}`);
}

/** A throwing deadline check. */
export function deadlineOf(ms: number, what: () => string): () => void {
  const deadline = Date.now() + ms;
  return () => {
    if (Date.now() > deadline) throw unavailable(what());
  };
}

/** Polls until every node in `want` (hostnames) is READY; returns the whole node list. */
export async function waitReady(c: Control, hosts: readonly LocalHost[], want: ReadonlySet<string>, timeLeft: () => void, progress: (l: string) => void): Promise<Node[]> {
  let last = '';
  for (;;) {
    timeLeft();
    for (const h of hosts) await checkAlive(h);
    let nodes: Node[] = [];
    try {
      nodes = await c.listNodes();
    } catch {
      /* the manager may be busy electing: ask again */
    }
    // A manager counts once it votes: a learner still catching up adds no fault tolerance yet.
    const managers = new Set(hosts.filter((h) => h.role === 'manager').map((h) => h.hostname));
    const catchingUp = (n: Node) => managers.has(n.description?.hostname ?? '') && (!n.managerStatus || n.managerStatus.learner);
    const up = nodes.filter((n) => n.status?.state === NodeState.NODE_STATE_READY && want.has(n.description?.hostname ?? ''));
    const ready = up.filter((n) => !catchingUp(n));
    const behind = up.filter(catchingUp);
    const line = `nodes ready: ${ready.length}/${want.size}${ready.length ? ` (${ready.map(nodeName).sort().join(' ')})` : ''}${behind.length ? `; managers catching up: ${behind.map(nodeName).sort().join(' ')}` : ''}`;
    if (line !== last) progress(line);
    last = line;
    if (ready.length >= want.size) return nodes;
    await sleep(500);
  }
}

async function loadReady(name: string, env: NodeJS.ProcessEnv): Promise<LocalClusterState> {
  const dir = join(localRoot(env), validateName(name));
  const state = await loadState(dir);
  if (!state) throw notFound(`no local cluster ${name} (swarmctl local ls)`);
  if (!state.ready) throw failedPrecondition(`local cluster ${name} did not finish coming up: run swarmctl local down --name ${name}, then up again`);
  return state;
}

function hostOf(state: LocalClusterState, host: string): LocalHost {
  const h = state.hosts.find((x) => x.name === host || x.hostname === host);
  if (!h) throw notFound(`local cluster ${state.name} has no host ${host} (hosts: ${state.hosts.map((x) => x.name).join(', ')})`);
  return h;
}

type LiveManager = { host: LocalHost; control: Control; tokens: { worker: string; manager: string } };

/** The first manager of `hosts` whose swarmd runs and whose control socket answers, if any. */
async function findLiveManager(hosts: readonly LocalHost[]): Promise<LiveManager | undefined> {
  for (const h of hosts) {
    if (h.role !== 'manager' || !isAlive(h.pid) || !existsSync(controlSocket(h))) continue;
    const control = unixControl(controlSocket(h));
    try {
      const jt = (await theCluster(control)).rootCa?.joinTokens;
      if (jt?.worker && jt.manager) return { host: h, control, tokens: { worker: jt.worker, manager: jt.manager } };
    } catch {
      /* try the next manager */
    }
    control.close();
  }
  return undefined;
}

/** A live manager of the cluster, or an error saying none answers. */
async function liveManager(state: LocalClusterState): Promise<LiveManager> {
  const m = await findLiveManager(state.hosts);
  if (!m) throw unavailable(`no manager of local cluster ${state.name} answers (swarmctl local ls shows which hosts run)`);
  return m;
}

export interface AddOptions {
  name: string;
  managers: number;
  workers: number;
  env: NodeJS.ProcessEnv;
  timeoutMs?: number;
  progress: (line: string) => void;
}

/** Adds hosts to a running local cluster; they join through a live manager. Returns them once READY. */
export async function localAdd(o: AddOptions): Promise<{ state: LocalClusterState; added: LocalHost[]; nodes: Node[] }> {
  if (!Number.isInteger(o.managers) || o.managers < 0) throw invalidArgument(`--managers ${o.managers}: 0 or more`);
  if (!Number.isInteger(o.workers) || o.workers < 0) throw invalidArgument(`--workers ${o.workers}: 0 or more`);
  if (o.managers + o.workers === 0) throw invalidArgument('local add: give --managers or --workers (at least one host)');
  if (process.getuid?.() !== 0) throw failedPrecondition('local add makes network namespaces: run it as root');
  const state = await loadReady(o.name, o.env);
  const swarmd = findSwarmd(o.env);
  const timeLeft = deadlineOf(o.timeoutMs ?? 120_000, () => `local add timed out; logs: ${state.dir}/*.log`);
  const { host: via, control, tokens } = await liveManager(state);
  try {
    const added: LocalHost[] = [];
    const roles = [...Array<'manager'>(o.managers).fill('manager'), ...Array<'worker'>(o.workers).fill('worker')];
    for (const role of roles) {
      const h = planHost(state, role);
      state.hosts.push(h);
      await saveState(state);
      await wireHost(state, h);
      h.pid = await spawnInNetns(h.netns, [...swarmd, 'join', '--token', role === 'manager' ? tokens.manager : tokens.worker, ...hostArgs(state, h), via.listenAddr], h.log, o.env);
      await saveState(state);
      o.progress(`${h.name} ${h.addr}: swarmd join as ${role} through ${via.name} (pid ${h.pid})`);
      added.push(h);
    }
    const nodes = await waitReady(control, added, new Set(added.map((h) => h.hostname)), timeLeft, o.progress);
    // New managers are fallbacks for swarmctl when the context points at this cluster.
    const ctx = state.contextPath ? await readContext(state.contextPath, false).catch(() => undefined) : undefined;
    const extra = added.filter((h) => h.role === 'manager').map((h) => `unix://${controlSocket(h)}`);
    if (ctx && state.contextPath && extra.length && ctx.host.includes(`${state.dir}/`)) {
      await writeContext(state.contextPath, { ...ctx, fallbackHosts: [...(ctx.fallbackHosts ?? []), ...extra] });
    }
    return { state, added, nodes };
  } finally {
    control.close();
  }
}

/**
 * Stops a host's swarmd (SIGTERM: its containers keep running, as on an agent restart). With
 * `kill`, the host dies at once as on a power loss: SIGKILL to swarmd and to every process in the
 * host's network namespace, containers included. `local start` brings it back.
 */
export async function localStop(o: { name: string; host: string; kill: boolean; env: NodeJS.ProcessEnv }): Promise<{ host: LocalHost; processes: number }> {
  const state = await loadReady(o.name, o.env);
  const h = hostOf(state, o.host);
  let pids: number[];
  if (o.kill) {
    pids = await clusterProcesses(`${h.stateDir}/`, [netnsPath(h.netns)]);
    if (h.pid && isAlive(h.pid) && !pids.includes(h.pid)) pids.push(h.pid);
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await waitGone(pids);
    // Containers live in their own namespaces: swarmd cleanup removes them (processes, mounts,
    // cgroups, task networking), as a reboot would.
    await cleanupHost(h, o.env);
  } else {
    pids = isAlive(h.pid) ? [h.pid!] : [];
    await terminate(pids, 25_000);
  }
  return { host: h, processes: pids.length };
}

/** Starts a stopped host's swarmd again (`swarmd run`: it resumes from its state dir and rejoins). */
export async function localStart(o: { name: string; host: string; env: NodeJS.ProcessEnv; timeoutMs?: number; progress: (line: string) => void }): Promise<{ host: LocalHost; nodes: Node[] }> {
  const state = await loadReady(o.name, o.env);
  const h = hostOf(state, o.host);
  if (isAlive(h.pid)) throw failedPrecondition(`swarmd on ${h.name} runs already (pid ${h.pid}): swarmctl local stop ${h.name} first`);
  h.pid = await spawnInNetns(h.netns, [...findSwarmd(o.env), 'run', '--state-dir', h.stateDir, '--listen-addr', h.listenAddr, '--advertise-addr', h.listenAddr, '--metrics-addr', metricsAddrOf(h)], h.log, o.env);
  await saveState(state);
  o.progress(`${h.name} ${h.addr}: swarmd run (pid ${h.pid})`);
  const timeLeft = deadlineOf(o.timeoutMs ?? 120_000, () => `local start timed out; log: ${h.log}`);
  // Its own socket answers once it runs a manager; otherwise ask any other live manager.
  const others = state.hosts.filter((x) => x !== h);
  for (;;) {
    timeLeft();
    await checkAlive(h);
    const m = await findLiveManager(h.role === 'manager' ? [h, ...others] : others);
    if (!m) {
      await sleep(500);
      continue;
    }
    try {
      return { host: h, nodes: await waitReady(m.control, [h], new Set([h.hostname]), timeLeft, o.progress) };
    } finally {
      m.control.close();
    }
  }
}
