import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, invalidArgument } from '@swarmd/common/errors';
import type { Node } from '@swarmd/proto/gen/swarm/objects';
import { theCluster, type Control } from '../client/control-client.js';
import { writeContext } from '../client/context.js';
import { createBridge, linkExists, listNetns, rootAddresses } from './underlay.js';
import { inSubnet, parseSubnet } from './subnet.js';
import { kernelNames, loadState, localRoot, saveState, validateName, type LocalClusterState, type LocalHost } from './state.js';
import { startRegistry } from './registry.js';
import { DEMO_PORT, seedDemoImage } from './demo-image.js';
import { findSwarmd, spawnInNetns } from './swarmd.js';
import { checkAlive, controlSocket, deadlineOf, hostArgs, planHost, unixControl, waitReady, wireHost } from './hosts.js';

export interface UpOptions {
  name: string;
  managers: number;
  workers: number;
  subnet: string;
  contextPath: string;
  env: NodeJS.ProcessEnv;
  /** Whole `up` deadline (default 180 s). */
  timeoutMs?: number;
  /** Progress lines. */
  progress: (line: string) => void;
  /** The store of the cluster: the built-in raft (default) or an external etcd at these client URLs. */
  store?: { kind: 'raft' } | { kind: 'etcd'; endpoints: string[] };
}

/** Brings up a local cluster; returns its state (saved in DIR/cluster.json at every step). */
export async function localUp(o: UpOptions): Promise<{ state: LocalClusterState; nodes: Node[]; selfNodeId?: string }> {
  const name = validateName(o.name);
  if (!Number.isInteger(o.managers) || o.managers < 1) throw invalidArgument(`--managers ${o.managers}: at least 1`);
  if (!Number.isInteger(o.workers) || o.workers < 0) throw invalidArgument(`--workers ${o.workers}: 0 or more`);
  const subnet = parseSubnet(o.subnet);
  const total = o.managers + o.workers;
  if (total > Math.min(64, subnet.capacity)) throw invalidArgument(`${total} hosts do not fit (at most ${Math.min(64, subnet.capacity)} on ${subnet.cidr})`);
  if (process.getuid?.() !== 0) throw failedPrecondition('local up makes network namespaces: run it as root');
  const swarmd = findSwarmd(o.env);
  if (o.store?.kind === 'etcd' && !o.store.endpoints.length) throw invalidArgument('--store etcd: --etcd-endpoints is required (etcd client URLs the hosts can reach, comma-separated)');

  const root = localRoot(o.env);
  const dir = join(root, name);
  const names = kernelNames(name);
  if (await loadState(dir)) throw failedPrecondition(`local cluster ${name} exists (swarmctl local ls; swarmctl local down --name ${name})`);
  if ((await linkExists(names.bridge)) || (await listNetns()).some((n) => n.startsWith(names.netnsPrefix))) {
    throw failedPrecondition(`leftovers of a local cluster ${name} exist: run swarmctl local down --name ${name} first`);
  }
  const clash = (await rootAddresses()).find((a) => inSubnet(a, subnet.cidr));
  if (clash) throw failedPrecondition(`subnet ${subnet.cidr} is in use on this machine (${clash}): choose another with --subnet`);

  const state: LocalClusterState = {
    name,
    dir,
    subnet: subnet.cidr,
    gateway: subnet.gateway,
    bridge: names.bridge,
    forwardRule: false,
    hosts: [],
    contextPath: o.contextPath,
    createdAt: new Date().toISOString(),
    ready: false,
    ...(o.store?.kind === 'etcd' ? { etcdEndpoints: o.store.endpoints } : {}),
  };
  for (let i = 0; i < total; i++) state.hosts.push(planHost(state, i < o.managers ? 'manager' : 'worker'));
  const hosts = state.hosts;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await saveState(state);
  const timeLeft = deadlineOf(o.timeoutMs ?? 180_000, () => `local up timed out; logs: ${dir}/*.log (swarmctl local down --name ${name} cleans up)`);

  // 1. underlay
  state.forwardRule = (await createBridge(names.bridge, `${subnet.gateway}/${subnet.prefixLen}`)).forwardRule;
  await saveState(state);
  for (const h of hosts) await wireHost(state, h);
  o.progress(`underlay: bridge ${names.bridge} ${subnet.gateway}/${subnet.prefixLen}, ${total} host${total > 1 ? "s" : ""} ${hosts[0].addr}${total > 1 ? `..${hosts[total - 1].addr}` : ""}`);

  // 2. registry on the gateway
  const reg = await startRegistry({ dir: join(dir, 'registry'), address: subnet.gateway });
  state.registry = reg;
  await saveState(state);
  o.progress(`registry: http://${reg.addr} (pid ${reg.pid})`);
  const demoImage = await seedDemoImage(reg.addr);
  o.progress(`image: ${demoImage} (busybox httpd on :${DEMO_PORT}, built with umoci, pushed with skopeo)`);

  // 3. the first manager
  const first = hosts[0];
  const storeArgs = state.etcdEndpoints ? ['--store', 'etcd', '--etcd-endpoints', state.etcdEndpoints.join(',')] : [];
  first.pid = await spawnInNetns(first.netns, [...swarmd, 'init', ...hostArgs(state, first), ...storeArgs], first.log, o.env);
  await saveState(state);
  o.progress(`${first.name} ${first.addr}: swarmd init${storeArgs.length ? ` --store etcd (${state.etcdEndpoints!.join(',')})` : ''} (pid ${first.pid})`);
  const sock = controlSocket(first);
  let control: Control | undefined;
  let tokens: { worker: string; manager: string } | undefined;
  try {
    while (!tokens) {
      timeLeft();
      await checkAlive(first);
      if (existsSync(sock)) {
        control ??= unixControl(sock);
        try {
          const jt = (await theCluster(control)).rootCa?.joinTokens;
          if (jt?.worker && jt.manager) tokens = { worker: jt.worker, manager: jt.manager };
        } catch {
          /* not serving yet */
        }
      }
      if (!tokens) await sleep(250);
    }
    const c = control!;

    // 4. the other managers one by one (each joins Raft through the first), then the workers
    const joinArgs = (h: LocalHost) => [...swarmd, 'join', '--token', h.role === 'manager' ? tokens!.manager : tokens!.worker, ...hostArgs(state, h), first.listenAddr];
    const nodesSeen = async () => (await c.listNodes().catch(() => [] as Node[])).length;
    for (const h of hosts.slice(1, o.managers)) {
      const before = await nodesSeen();
      h.pid = await spawnInNetns(h.netns, joinArgs(h), h.log, o.env);
      await saveState(state);
      o.progress(`${h.name} ${h.addr}: swarmd join as manager (pid ${h.pid})`);
      while ((await nodesSeen()) <= before) {
        timeLeft();
        await checkAlive(h);
        await sleep(250);
      }
    }
    for (const h of hosts.slice(o.managers)) {
      h.pid = await spawnInNetns(h.netns, joinArgs(h), h.log, o.env);
      await saveState(state);
      o.progress(`${h.name} ${h.addr}: swarmd join as worker (pid ${h.pid})`);
    }

    // 5. every node READY
    const nodes = await waitReady(c, hosts, new Set(hosts.map((h) => h.hostname)), timeLeft, o.progress);

    // 6. the context file: swarmctl in the root namespace reaches the first manager's socket
    const selfNodeId = await nodeIdOf(first.stateDir);
    await writeContext(o.contextPath, {
      name,
      host: `unix://${sock}`,
      ...(selfNodeId ? { nodeId: selfNodeId } : {}),
      fallbackHosts: hosts.slice(1, o.managers).map((h) => `unix://${controlSocket(h)}`),
    });
    state.ready = true;
    await saveState(state);
    return { state, nodes, selfNodeId };
  } finally {
    control?.close();
  }
}

async function nodeIdOf(stateDir: string): Promise<string | undefined> {
  try {
    return /^CN=(.*)$/m.exec(new X509Certificate(await readFile(join(stateDir, 'certs', 'node.pem'))).subject)?.[1];
  } catch {
    return undefined;
  }
}
