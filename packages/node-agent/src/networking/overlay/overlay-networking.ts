/**
 * Overlay networks on this host (the I/O driver around model.ts, plan.ts and dns-records.ts).
 *
 * Per overlay network, made when the first local task joins it and removed with the last: a
 * bridge holding the network's gateway address and a kernel vxlan device on it (id = VNI, port
 * 4789, no learning, ARP proxy, local = this node's underlay address, MTU = underlay − 50), static
 * FDB + neighbour entries for every peer on another host (diffed on each pushed set), the
 * embedded resolver's sockets on the gateway, and the nft table (isolation, masquerade). Each
 * task gets a veth per network into its own netns (eth0, eth1, … in attachment order), and there
 * an nft table spreading its connections to services' VIPs over their ready endpoints
 * (vip-rules.ts).
 *
 * The pushed NetworkStateSet enters by setState (in-memory swap: DNS answers change at once,
 * FDB/neighbour entries and the tasks' VIP tables right after, in one spawn). Local attachments
 * and programmed networks are kept in DIR/networking/overlay.json so a restarted agent (or
 * `swarmd cleanup`) knows what it made.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetworkState, NetworkStateSet, Task } from '@swarmd/proto';
import { describeError } from '@swarmd/common/errors';
import { phaseTimer } from '@swarmd/common/phases';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { run, type RunResult } from '@swarmd/common/exec';
import type { AttachOptions, TaskNetwork } from '../../executor/container-executor.js';
import { PermanentError } from '../../executor/executor.js';
import { writeFileAtomic } from '../../session/state-files.js';
import { taskNetns } from '../bridge-network.js';
import { failedSteps, HostExec, type BatchStep } from '../host-exec.js';
import { afterFirstNetns, keyedQueue, serialQueue } from '../serial.js';
import { buildDnsIndex } from './dns-records.js';
import { INGRESS_TABLE, ingressRuleset, meshPorts } from './ingress-plan.js';
import { goneEndpoints, staleFlowLines } from './stale-flows.js';
import { DnsResolver, type DnsResolverOptions } from './dns-server.js';
import {
  LINK_PREFIX,
  macOf,
  OVERLAY_TABLE,
  overlayAttachments,
  overlayNetworkOf,
  ownUnderlayAddr,
  parseCidr,
  remotePeers,
  VXLAN_OVERHEAD,
  vethName,
  type OverlayNetwork,
  type RemotePeer,
} from './model.js';
import { networkCreateLines, networkDeleteLines, overlayRuleset, peerChanges, peersFromKernel, taskLinkLines, type TaskLink } from './plan.js';
import { taskVipServices, vipRuleset, vipTransaction } from './vip-rules.js';

export interface OverlayNetworkingOptions {
  nodeId: string;
  /** Holds networking/overlay.json and overlay.nft. */
  stateDir: string;
  /** The host's netns (a path) when the agent does not run in it (tests); default: the agent's own. */
  hostNetns?: string;
  /** This node's underlay address (the vxlan's local end); default: the one its peers in the pushed set name. */
  underlayAddr?: string;
  /** The embedded resolver: upstreams, forward timeout, and its port (53; tests may choose). */
  dns?: DnsResolverOptions & { port?: number };
  /** Called after each pushed set is programmed (peers and VIP tables), with how long it took. */
  onProgrammed?: (p: Programming) => void;
  logger?: Logger;
}

/** One pushed set, programmed. */
export interface Programming {
  /** From setState to the kernel holding it (queueing behind earlier work included). */
  ms: number;
  /** Local tasks whose VIP table changed (and were loaded, or failed). */
  vipTables: number;
  /** Of those, the loads that failed (a task leaving meanwhile; retried at the next set). */
  failed: number;
}

/** A local task's VIP table: its netns, its networks, and the ruleset in it (undefined: not known). */
interface VipTable {
  nsPath: string;
  networks: string[];
  loaded?: string;
  /** The endpoints of the loaded table (their stale flows go when they leave it). */
  endpoints?: Set<string>;
}

interface Attachment {
  networkId: string;
  ip: string;
  veth: string;
}

interface OverlayFile {
  version: 1;
  /** Programmed networks (their devices exist on this host). */
  networks: Record<string, OverlayNetwork>;
  /** Local tasks' attachments, in the task's order. */
  tasks: Record<string, Attachment[]>;
  /** The node's own membership of the ingress network (the routing mesh), with its address. */
  mesh?: { networkId: string; addr: string };
}

/** Networks a local task or the node itself (the mesh) uses. */
function usedNetworks(doc: OverlayFile): Set<string> {
  const used = new Set(Object.values(doc.tasks).flatMap((l) => l.map((a) => a.networkId)));
  if (doc.mesh) used.add(doc.mesh.networkId);
  return used;
}

export class OverlayNetworking {
  private readonly exec: HostExec;
  private readonly log: Logger;
  private readonly dns: DnsResolver;
  private readonly file: string;
  private readonly serial = serialQueue();
  private readonly perTask = keyedQueue();
  private states = new Map<string, NetworkState>();
  private set: NetworkStateSet = { networks: [] };
  /** Peers on the vxlan device of each programmed network, as last written. */
  private readonly peers = new Map<string, Map<string, RemotePeer>>();
  private doc: Promise<OverlayFile> | undefined;
  private loadedRules: string | undefined;
  private loadedMesh: string | undefined;
  /** The endpoints of the loaded mesh table (their stale flows go when they leave it). */
  private meshEndpoints = new Set<string>();
  /** The stale-flow deletions under way (dropStaleFlows). */
  private flushing: Promise<void> = Promise.resolve();
  private underlay: { addr?: string; mtu: number } | undefined;
  /** Local tasks whose links are in place (attached, or found by start), by task id. */
  private readonly vipTables = new Map<string, VipTable>();
  /** Bumped by every setState: an attach that rendered its table from an older set catches up. */
  private generation = 0;
  private readonly history: Programming[] = [];

  constructor(private readonly o: OverlayNetworkingOptions) {
    this.exec = new HostExec(o.hostNetns);
    this.log = o.logger ?? nullLogger;
    this.dns = new DnsResolver({ ...o.dns, logger: this.log });
    this.file = join(o.stateDir, 'networking', 'overlay.json');
  }

  /** Whether a task joins overlay networks (an allocated address on one): this layer attaches it. */
  handles(t: Task): boolean {
    return overlayAttachments(t).length > 0;
  }

  /**
   * The latest pushed set: DNS answers swap at once; FDB/neighbour entries and the local tasks'
   * VIP tables follow, written by one spawn (resolved when written). Only tasks whose table text
   * changed are touched, each with one atomic `nft -f`.
   */
  setState(set: NetworkStateSet): Promise<void> {
    const t0 = performance.now();
    this.set = set;
    this.states = new Map(set.networks.filter((s) => s.network?.id).map((s) => [s.network!.id, s]));
    this.generation++;
    this.dns.setIndex(buildDnsIndex(set));
    return this.serial(async () => {
      const peers = [];
      for (const id of this.peers.keys()) {
        const p = await this.peerSync(id);
        if (p) peers.push(p);
      }
      const vip = this.vipSync();
      const steps = [...peers.flatMap((p) => p.steps), ...vip.steps];
      let failed = 0;
      try {
        const r = steps.length ? await this.exec.script(steps) : undefined;
        for (const p of peers) p.done();
        if (r) failed = vip.done(r);
      } catch (err) {
        failed = vip.tables;
        this.log.warn('overlay peers and VIP tables not written', { networks: peers.map((p) => p.name), err: describeError(err) });
      }
      this.record({ ms: performance.now() - t0, vipTables: vip.tables, failed });
      const meshStale = await this.syncMesh();
      this.dropStaleFlows([...vip.stale, ...meshStale]);
    });
  }

  /**
   * Deletes stale flows (stale-flows.ts) in the background: the tables are what routes new
   * connections, so a set counts as programmed without this; a retransmitted SYN comes a second
   * or more later. One spawn, the netns side by side.
   */
  private dropStaleFlows(steps: BatchStep[]): void {
    if (!steps.length) return;
    this.flushing = this.flushing.then(() =>
      this.exec.script(steps).then(
        () => undefined,
        (err: unknown) => this.log.warn('stale connection entries not deleted', { err: describeError(err) }),
      ),
    );
  }

  /** How long the last pushed sets (up to 1000) took to program, oldest first. */
  programming(): readonly Programming[] {
    return [...this.history];
  }

  private record(p: Programming): void {
    this.history.push(p);
    if (this.history.length > 1000) this.history.shift();
    if (p.vipTables) this.log.debug('VIP tables programmed', { tasks: p.vipTables, failed: p.failed, ms: Math.round(p.ms) });
    this.o.onProgrammed?.(p);
  }

  /**
   * The routing mesh (ingress-plan.ts): while the pushed set has the ingress network with this
   * node's address, the node is a member (bridge + vxlan even with no local task, its address on
   * the bridge) and its mesh table forwards every published port; else all of it goes. Under the lock.
   */
  private async syncMesh(): Promise<BatchStep[]> {
    const doc = await this.load();
    const state = [...this.states.values()].find((s) => s.network?.spec?.ingress && s.nodeAddress);
    const net = state ? overlayNetworkOf(state) : undefined;
    if (!state || !net || 'error' in net) {
      if (!doc.mesh) return [];
      const gone = doc.mesh;
      delete doc.mesh;
      await this.exec.deleteNftTable(INGRESS_TABLE);
      this.loadedMesh = undefined;
      this.meshEndpoints = new Set();
      const had = doc.networks[gone.networkId];
      if (had) await this.exec.script([{ force: true, lines: [`addr del ${gone.addr}/32 dev ${had.bridge}`] }]);
      if (!usedNetworks(doc).has(gone.networkId)) await this.removeNetwork(gone.networkId, doc);
      await this.save(doc);
      await this.writeRules(doc);
      return [];
    }
    const addr = parseCidr(state.nodeAddress).ip;
    await this.ensureNetwork(net, doc);
    if (doc.mesh?.addr !== addr || doc.mesh.networkId !== net.id) {
      if (doc.mesh) await this.exec.script([{ force: true, lines: [`addr del ${doc.mesh.addr}/32 dev ${net.bridge}`] }]);
      // Other hosts reach this address at the MAC derived from it (as every peer): the bridge
      // takes frames to that MAC as its own.
      await this.exec.script([
        { lines: [`addr replace ${addr}/32 dev ${net.bridge}`] },
        { tool: 'bridge', force: true, lines: [`fdb replace ${macOf(addr)} dev ${net.bridge} self local`] },
      ]);
      doc.mesh = { networkId: net.id, addr };
      await this.save(doc);
      await this.writeRules(doc);
      this.log.info('routing mesh joined', { network: net.name, addr });
    }
    const ports = meshPorts(state);
    const rules = ingressRuleset(INGRESS_TABLE, net.bridge, addr, ports);
    if (rules === this.loadedMesh) return [];
    if (rules) await this.exec.loadNftTable(INGRESS_TABLE, rules, join(this.o.stateDir, 'networking', 'ingress.nft'));
    else await this.exec.deleteNftTable(INGRESS_TABLE);
    this.loadedMesh = rules;
    const endpoints = new Set(ports.flatMap((p) => p.endpoints));
    const stale = staleFlowLines(goneEndpoints(this.meshEndpoints, endpoints));
    this.meshEndpoints = endpoints;
    return stale.length ? [{ tool: 'conntrack', label: 'ct-mesh', parallel: true, lines: stale }] : [];
  }

  /** Re-programs the networks a previous run left (sockets, peers, rules); drops those no task uses. */
  async start(): Promise<void> {
    const doc = await this.load();
    if (!Object.keys(doc.networks).length && !Object.keys(doc.tasks).length) return;
    await this.serial(async () => {
      const used = usedNetworks(doc);
      for (const n of Object.values(doc.networks)) {
        if (used.has(n.id)) await this.ensureNetwork(n, doc);
        else await this.removeNetwork(n.id, doc);
      }
      await this.save(doc);
      await this.writeRules(doc);
      // Tasks of a previous run: their tables are reloaded once (atomic replace), then diffed.
      for (const [id, atts] of Object.entries(doc.tasks)) {
        const { nsPath } = taskNetns(this.o.nodeId, id);
        if (existsSync(nsPath) && !this.vipTables.has(id)) this.vipTables.set(id, { nsPath, networks: atts.map((a) => a.networkId) });
      }
      await this.programVip();
    });
  }

  attach(task: Task, o: AttachOptions = {}): Promise<TaskNetwork> {
    return this.perTask(task.id, () => this.doAttach(task, o));
  }

  /** Removes a task's links; its networks go with their last local task. False: not an overlay task. */
  detach(taskId: string): Promise<boolean> {
    return this.perTask(taskId, () => this.doDetach(taskId));
  }

  /** A task's links, in its order, from the pushed set (a network not in it yet: retried). */
  private taskLinks(task: Task): TaskLink[] {
    return overlayAttachments(task).map((a) => {
      const state = this.states.get(a.networkId);
      if (!state) throw new Error(`overlay network ${a.networkId} is not in the network state pushed to this node yet`);
      const net = overlayNetworkOf(state);
      if ('error' in net) throw new PermanentError(net.error);
      return { network: net, ip: parseCidr(a.address).ip, veth: vethName(task.id, net.id) };
    });
  }

  /**
   * Where the ports a task publishes in mode=host go: its address on its first network that is
   * not internal (the one its default route and so its replies use), and that network's bridge.
   */
  hostPortTarget(task: Task): { ip: string; dev: string } {
    const l = this.taskLinks(task).find((x) => !x.network.internal);
    if (!l) throw new PermanentError('ports published in mode=host need a network that is not internal (a task only on internal networks cannot answer)');
    return { ip: l.ip, dev: l.network.bridge };
  }

  private async doAttach(task: Task, o: AttachOptions): Promise<TaskNetwork> {
    const links = this.taskLinks(task);
    const doc = await this.load();
    const before = doc.tasks[task.id];
    const { phase, phases } = phaseTimer();
    await this.serial(async () => {
      phase('lockWait');
      for (const l of links) await this.ensureNetwork(l.network, doc);
      doc.tasks[task.id] = links.map((l) => ({ networkId: l.network.id, ip: l.ip, veth: l.veth }));
      await this.save(doc);
      await this.writeRules(doc);
      phase('recordAndRules');
    });
    const { netns, nsPath } = taskNetns(this.o.nodeId, task.id);
    const existing = before ? await this.links() : new Set<string>();
    const { mtu } = await this.underlayOf();
    const { host, inside } = taskLinkLines(netns, links, mtu, existing);
    // A netns of the task with no record here is a leftover of an earlier life (a crash before the
    // record was kept, a lost state dir): its links are unknown, so it is made anew.
    const stale = !before && existsSync(nsPath);
    const fresh = stale || !existsSync(nsPath);
    let netnsLines = [...(stale ? [`netns del ${netns}`] : []), ...(fresh ? [`netns add ${netns}`] : [])];
    const dns = { nameservers: [links[0].network.gateway], options: ['ndots:0'] };
    if (o.onNetns) {
      // The netns first, on its own: a container create joins it while the links are made.
      if (stale) await afterFirstNetns(() => this.exec.script([{ lines: netnsLines }]));
      else if (fresh) await afterFirstNetns(() => this.exec.run('ip', ['netns', 'add', netns]));
      netnsLines = [];
      phase('netns');
      o.onNetns({ netnsPath: nsPath, dns });
    }
    // The VIP table goes in with the links (none in a new netns whose networks have no VIP service).
    const generation = this.generation;
    const networks = links.map((l) => l.network.id);
    const services = taskVipServices(networks, this.states);
    const rules = vipRuleset(services);
    const vip: BatchStep[] = [{ nsPath, tool: 'nft', lines: vipTransaction(rules, { fresh }) }];
    phase('plan');
    await afterFirstNetns(() => this.exec.script([{ lines: [...netnsLines, ...host] }, { nsPath, lines: inside }, ...vip]));
    phase('links');
    this.vipTables.set(task.id, { nsPath, networks, loaded: rules, endpoints: new Set(services.flatMap((x) => x.endpoints)) });
    // A set pushed meanwhile may have been programmed without this task: bring its table up to it.
    if (this.generation !== generation) await this.serial(() => this.programVip());
    phase('catchUp');
    this.log.info('task attached to overlay networks', { task: task.id, networks: links.map((l) => `${l.network.name}:${l.ip}`) });
    this.log.debug('attach phases (ms)', phases);
    return {
      netnsPath: nsPath,
      ports: [],
      addresses: links.map((l) => `${l.ip}/${l.network.bits}`),
      dns,
    };
  }

  private async doDetach(taskId: string): Promise<boolean> {
    const doc = await this.load();
    const had = doc.tasks[taskId];
    if (!had) return false;
    this.vipTables.delete(taskId);
    await this.exec.script([{ force: true, lines: had.map((a) => `link del ${a.veth}`) }]);
    await run('ip', ['netns', 'del', taskNetns(this.o.nodeId, taskId).netns], { okCodes: [0, 1] });
    await this.serial(async () => {
      delete doc.tasks[taskId];
      const used = usedNetworks(doc);
      for (const a of had) if (!used.has(a.networkId)) await this.removeNetwork(a.networkId, doc);
      await this.save(doc);
      await this.writeRules(doc);
    });
    return true;
  }

  /** Creates (or adopts, after a restart) a network's devices, peers and resolver sockets. Under the lock. */
  private async ensureNetwork(net: OverlayNetwork, doc: OverlayFile): Promise<void> {
    if (this.peers.has(net.id)) return;
    const names = await this.links();
    let peers = new Map<string, RemotePeer>();
    if (names.has(net.bridge) && names.has(net.vxlan)) {
      const [fdb, neigh] = await Promise.all([
        this.exec.run('bridge', ['-j', 'fdb', 'show', 'dev', net.vxlan], { okCodes: [0, 1, 255] }),
        this.exec.run('ip', ['-j', 'neigh', 'show', 'dev', net.vxlan], { okCodes: [0, 1, 255] }),
      ]);
      peers = peersFromKernel(fdb.stdout, neigh.stdout);
    } else {
      const { addr, mtu } = await this.underlayOf();
      await this.exec.script([
        { force: true, lines: networkDeleteLines(net).filter((l) => names.has(l.split(' ')[2])) },
        { lines: networkCreateLines(net, { ...(addr ? { local: addr } : {}), mtu }) },
      ]);
      await this.exec.run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      this.log.info('overlay network created', { network: net.name, vni: net.vni, bridge: net.bridge, local: addr, mtu });
    }
    doc.networks[net.id] = net;
    this.peers.set(net.id, peers);
    await this.syncPeers(net.id);
    await this.dns.listen(net.id, net.gateway, { ...(this.o.dns?.port !== undefined ? { port: this.o.dns.port } : {}), ...(this.o.hostNetns ? { netns: this.o.hostNetns } : {}) });
  }

  /** Writes the FDB/neighbour changes of one programmed network toward the pushed set. Under the lock. */
  private async syncPeers(networkId: string): Promise<void> {
    const p = await this.peerSync(networkId);
    if (!p) return;
    try {
      await this.exec.script(p.steps);
      p.done();
    } catch (err) {
      this.log.warn('overlay peers not written', { network: p.name, err: describeError(err) });
    }
  }

  /** The FDB/neighbour changes of one programmed network toward the pushed set (none: undefined). */
  private async peerSync(networkId: string): Promise<{ name: string; steps: BatchStep[]; done: () => void } | undefined> {
    const prev = this.peers.get(networkId);
    const state = this.states.get(networkId);
    const net = (await this.load()).networks[networkId];
    if (!prev || !state || !net) return undefined; // not in the set (any more): keep what is there
    const next = remotePeers(state, { nodeId: this.o.nodeId, ...(this.underlayAddr() ? { addr: this.underlayAddr() } : {}) });
    const { fdb, neigh } = peerChanges(net.vxlan, prev, next);
    if (!fdb.length && !neigh.length) return undefined;
    return {
      name: net.name,
      steps: [
        { tool: 'bridge', force: true, lines: fdb },
        { force: true, lines: neigh },
      ],
      done: () => this.peers.set(networkId, next),
    };
  }

  /**
   * The `nft -f` transactions bringing local tasks' VIP tables to the pushed set: only tasks whose
   * ruleset text changed. `done` (with the script's result) keeps what was loaded and returns how
   * many failed (their table is loaded again at the next set).
   */
  private vipSync(): { steps: BatchStep[]; stale: BatchStep[]; tables: number; done: (r: RunResult) => number } {
    const changed: { taskId: string; table: VipTable; rules: string; endpoints: Set<string> }[] = [];
    for (const [taskId, table] of this.vipTables) {
      const services = taskVipServices(table.networks, this.states);
      const rules = vipRuleset(services);
      if (rules !== table.loaded) changed.push({ taskId, table, rules, endpoints: new Set(services.flatMap((x) => x.endpoints)) });
    }
    const label = (i: number) => `vip${i}`;
    return {
      tables: changed.length,
      steps: changed.map((c, i): BatchStep => ({ nsPath: c.table.nsPath, tool: 'nft', label: label(i), parallel: true, lines: vipTransaction(c.rules) })),
      // Once the tables are in: the unanswered flows toward endpoints that left one (stale-flows.ts).
      stale: changed
        .map((c, i): BatchStep => ({ nsPath: c.table.nsPath, tool: 'conntrack', label: `ct${i}`, parallel: true, lines: staleFlowLines(goneEndpoints(c.table.endpoints, c.endpoints)) }))
        .filter((st) => st.lines.length > 0),
      done: (r) => {
        const failed = failedSteps(r);
        changed.forEach((c, i) => {
          if (!failed.has(label(i))) {
            c.table.loaded = c.rules;
            c.table.endpoints = c.endpoints;
            return;
          }
          c.table.loaded = undefined;
          if (this.vipTables.get(c.taskId) === c.table) this.log.warn('VIP table not loaded', { task: c.taskId, err: r.stderr.trim().split('\n').slice(-3).join(' | ') });
        });
        return failed.size;
      },
    };
  }

  /** Brings every local task's VIP table to the current set (start, an attach overtaken by a set). Under the lock. */
  private async programVip(): Promise<void> {
    const vip = this.vipSync();
    if (!vip.steps.length) return;
    try {
      vip.done(await this.exec.script(vip.steps));
    } catch (err) {
      this.log.warn('VIP tables not written', { err: describeError(err) });
    }
  }

  /** Removes a network's devices and sockets. Under the lock. */
  private async removeNetwork(networkId: string, doc: OverlayFile): Promise<void> {
    const net = doc.networks[networkId];
    await this.dns.close(networkId);
    this.peers.delete(networkId);
    delete doc.networks[networkId];
    if (!net) return;
    await this.exec.script([{ force: true, lines: networkDeleteLines(net) }]);
    this.log.info('overlay network removed', { network: net.name, vni: net.vni });
  }

  private async writeRules(doc: OverlayFile): Promise<void> {
    const nets = Object.values(doc.networks);
    if (!nets.length) {
      if (this.loadedRules !== '') await this.exec.deleteNftTable(OVERLAY_TABLE);
      this.loadedRules = '';
      return;
    }
    const rules = overlayRuleset(OVERLAY_TABLE, nets);
    if (rules === this.loadedRules) return;
    await this.exec.loadNftTable(OVERLAY_TABLE, rules, join(this.o.stateDir, 'networking', 'overlay.nft'));
    this.loadedRules = rules;
  }

  private underlayAddr(): string | undefined {
    return this.o.underlayAddr ?? ownUnderlayAddr(this.set.networks, this.o.nodeId);
  }

  /** This node's underlay address and the overlay MTU (underlay MTU − 50; 1450 when unknown). */
  private async underlayOf(): Promise<{ addr?: string; mtu: number }> {
    const addr = this.underlayAddr();
    if (this.underlay && this.underlay.addr === addr) return this.underlay;
    let mtu = 1500;
    if (addr) {
      const r = await this.exec.run('ip', ['-j', '-4', 'addr', 'show'], { okCodes: [0, 1] });
      const ifs = JSON.parse(r.stdout || '[]') as { mtu?: number; addr_info?: { local?: string }[] }[];
      mtu = ifs.find((i) => i.addr_info?.some((a) => a.local === addr))?.mtu ?? mtu;
    }
    this.underlay = { ...(addr ? { addr } : {}), mtu: mtu - VXLAN_OVERHEAD };
    return this.underlay;
  }

  /** The names of the links in the host's netns. */
  private async links(): Promise<Set<string>> {
    const r = await this.exec.run('ip', ['-o', 'link', 'show']);
    return new Set([...r.stdout.matchAll(/^\d+:\s+([^:@\s]+)/gm)].map((m) => m[1]));
  }

  private load(): Promise<OverlayFile> {
    this.doc ??= readFile(this.file, 'utf8').then(
      (text) => {
        const d = JSON.parse(text) as Partial<OverlayFile>;
        return { version: 1 as const, networks: d.networks ?? {}, tasks: d.tasks ?? {}, ...(d.mesh ? { mesh: d.mesh } : {}) };
      },
      () => ({ version: 1 as const, networks: {}, tasks: {} }),
    );
    return this.doc;
  }

  private save(doc: OverlayFile): Promise<void> {
    return writeFileAtomic(this.file, JSON.stringify(doc, null, 2) + '\n');
  }

  /** Closes the resolver's sockets (agent stop: devices and links stay with the running containers). */
  async stop(): Promise<void> {
    await this.dns.closeAll();
    await this.flushing;
  }

  /**
   * Removes everything the overlay made on this host: tasks' links and netns, every bridge and
   * vxlan device of ours (also ones no file names), the nft table, the sockets, the file.
   */
  async destroy(): Promise<void> {
    await this.flushing;
    const doc = await this.load();
    await Promise.all(Object.keys(doc.tasks).map((id) => this.detach(id)));
    await this.serial(async () => {
      await this.dns.closeAll();
      const ours = [...(await this.links())].filter((l) => Object.values(LINK_PREFIX).some((p) => l.startsWith(p) && /^\w+$/.test(l)));
      const order = (l: string) => (l.startsWith(LINK_PREFIX.bridge) ? 1 : 0); // ports before bridges
      await this.exec.script([{ force: true, lines: ours.sort((a, b) => order(a) - order(b)).map((l) => `link del ${l}`) }]);
      await this.exec.deleteNftTable(OVERLAY_TABLE);
      await this.exec.deleteNftTable(INGRESS_TABLE);
      this.loadedRules = '';
      this.loadedMesh = undefined;
      this.meshEndpoints = new Set();
      delete doc.mesh;
      this.peers.clear();
      this.vipTables.clear();
      doc.networks = {};
      doc.tasks = {};
      await rm(this.file, { force: true });
    });
  }
}
