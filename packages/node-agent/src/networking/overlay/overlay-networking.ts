/**
 * Overlay networks on this host (the I/O driver around model.ts, plan.ts and dns-records.ts).
 *
 * Per overlay network, made when the first local task joins it and removed with the last: a
 * bridge holding the network's gateway address and a kernel vxlan device on it (id = VNI, port
 * 4789, no learning, ARP proxy, local = this node's underlay address, MTU = underlay − 50), static
 * FDB + neighbour entries for every peer on another host (diffed on each pushed set), the
 * embedded resolver's sockets on the gateway, and the nft table (isolation, masquerade). Each
 * task gets a veth per network into its own netns (eth0, eth1, … in attachment order).
 *
 * The pushed NetworkStateSet enters by setState (in-memory swap: DNS answers change at once,
 * FDB/neighbour entries right after). Local attachments and programmed networks are kept in
 * DIR/networking/overlay.json so a restarted agent (or `swarmd cleanup`) knows what it made.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetworkState, NetworkStateSet, Task } from '@swarmd/proto';
import { describeError, nullLogger, run, type Logger } from '@swarmd/common';
import type { TaskNetwork } from '../../executor/container-executor.js';
import { PermanentError } from '../../executor/executor.js';
import { writeFileAtomic } from '../../session/state-files.js';
import { hostPorts, taskNetns } from '../bridge-network.js';
import { HostExec } from '../host-exec.js';
import { afterFirstNetns, keyedQueue, serialQueue } from '../serial.js';
import { buildDnsIndex } from './dns-records.js';
import { INGRESS_TABLE, ingressRuleset, meshPorts } from './ingress-plan.js';
import { DnsResolver, type DnsResolverOptions } from './dns-server.js';
import {
  LINK_PREFIX,
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
  logger?: Logger;
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
  private underlay: { addr?: string; mtu: number } | undefined;

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

  /** The latest pushed set: DNS answers swap at once; FDB/neighbour entries follow (resolved when written). */
  setState(set: NetworkStateSet): Promise<void> {
    this.set = set;
    this.states = new Map(set.networks.filter((s) => s.network?.id).map((s) => [s.network!.id, s]));
    this.dns.setIndex(buildDnsIndex(set));
    return this.serial(async () => {
      for (const id of this.peers.keys()) await this.syncPeers(id);
      await this.syncMesh();
    });
  }

  /**
   * The routing mesh (ingress-plan.ts): while the pushed set has the ingress network with this
   * node's address, the node is a member (bridge + vxlan even with no local task, its address on
   * the bridge) and its mesh table forwards every published port; else all of it goes. Under the lock.
   */
  private async syncMesh(): Promise<void> {
    const doc = await this.load();
    const state = [...this.states.values()].find((s) => s.network?.spec?.ingress && s.nodeAddress);
    const net = state ? overlayNetworkOf(state) : undefined;
    if (!state || !net || 'error' in net) {
      if (!doc.mesh) return;
      const gone = doc.mesh;
      delete doc.mesh;
      await this.exec.deleteNftTable(INGRESS_TABLE);
      this.loadedMesh = undefined;
      const had = doc.networks[gone.networkId];
      if (had) await this.exec.script([{ force: true, lines: [`addr del ${gone.addr}/32 dev ${had.bridge}`] }]);
      if (!usedNetworks(doc).has(gone.networkId)) await this.removeNetwork(gone.networkId, doc);
      await this.save(doc);
      await this.writeRules(doc);
      return;
    }
    const addr = parseCidr(state.nodeAddress).ip;
    await this.ensureNetwork(net, doc);
    if (doc.mesh?.addr !== addr || doc.mesh.networkId !== net.id) {
      if (doc.mesh) await this.exec.script([{ force: true, lines: [`addr del ${doc.mesh.addr}/32 dev ${net.bridge}`] }]);
      await this.exec.script([{ lines: [`addr replace ${addr}/32 dev ${net.bridge}`] }]);
      doc.mesh = { networkId: net.id, addr };
      await this.save(doc);
      await this.writeRules(doc);
      this.log.info('routing mesh joined', { network: net.name, addr });
    }
    const rules = ingressRuleset(INGRESS_TABLE, net.bridge, addr, meshPorts(state));
    if (rules === this.loadedMesh) return;
    if (rules) await this.exec.loadNftTable(INGRESS_TABLE, rules, join(this.o.stateDir, 'networking', 'ingress.nft'));
    else await this.exec.deleteNftTable(INGRESS_TABLE);
    this.loadedMesh = rules;
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
    });
  }

  attach(task: Task): Promise<TaskNetwork> {
    return this.perTask(task.id, () => this.doAttach(task));
  }

  /** Removes a task's links; its networks go with their last local task. False: not an overlay task. */
  detach(taskId: string): Promise<boolean> {
    return this.perTask(taskId, () => this.doDetach(taskId));
  }

  private async doAttach(task: Task): Promise<TaskNetwork> {
    if (hostPorts(task).length) throw new PermanentError('ports published in mode=host are not supported for tasks on overlay networks yet');
    const links: TaskLink[] = overlayAttachments(task).map((a) => {
      const state = this.states.get(a.networkId);
      if (!state) throw new Error(`overlay network ${a.networkId} is not in the network state pushed to this node yet`);
      const net = overlayNetworkOf(state);
      if ('error' in net) throw new PermanentError(net.error);
      return { network: net, ip: parseCidr(a.address).ip, veth: vethName(task.id, net.id) };
    });
    const doc = await this.load();
    const before = doc.tasks[task.id];
    await this.serial(async () => {
      for (const l of links) await this.ensureNetwork(l.network, doc);
      doc.tasks[task.id] = links.map((l) => ({ networkId: l.network.id, ip: l.ip, veth: l.veth }));
      await this.save(doc);
      await this.writeRules(doc);
    });
    const { netns, nsPath } = taskNetns(this.o.nodeId, task.id);
    const existing = before ? await this.links() : new Set<string>();
    const { mtu } = await this.underlayOf();
    const { host, inside } = taskLinkLines(netns, links, mtu, existing);
    // A netns of the task with no record here is a leftover of an earlier life (a crash before the
    // record was kept, a lost state dir): its links are unknown, so it is made anew.
    const stale = !before && existsSync(nsPath);
    const netnsLines = [...(stale ? [`netns del ${netns}`] : []), ...(stale || !existsSync(nsPath) ? [`netns add ${netns}`] : [])];
    await afterFirstNetns(() => this.exec.script([{ lines: [...netnsLines, ...host] }, { nsPath, lines: inside }]));
    this.log.info('task attached to overlay networks', { task: task.id, networks: links.map((l) => `${l.network.name}:${l.ip}`) });
    return {
      netnsPath: nsPath,
      ports: [],
      addresses: links.map((l) => `${l.ip}/${l.network.bits}`),
      dns: { nameservers: [links[0].network.gateway], options: ['ndots:0'] },
    };
  }

  private async doDetach(taskId: string): Promise<boolean> {
    const doc = await this.load();
    const had = doc.tasks[taskId];
    if (!had) return false;
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
    const prev = this.peers.get(networkId);
    const state = this.states.get(networkId);
    const net = (await this.load()).networks[networkId];
    if (!prev || !state || !net) return; // not in the set (any more): keep what is there
    const next = remotePeers(state, { nodeId: this.o.nodeId, ...(this.underlayAddr() ? { addr: this.underlayAddr() } : {}) });
    const { fdb, neigh } = peerChanges(net.vxlan, prev, next);
    if (!fdb.length && !neigh.length) return;
    try {
      await this.exec.script([
        { tool: 'bridge', force: true, lines: fdb },
        { force: true, lines: neigh },
      ]);
      this.peers.set(networkId, next);
    } catch (err) {
      this.log.warn('overlay peers not written', { network: net.name, err: describeError(err) });
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
  }

  /**
   * Removes everything the overlay made on this host: tasks' links and netns, every bridge and
   * vxlan device of ours (also ones no file names), the nft table, the sockets, the file.
   */
  async destroy(): Promise<void> {
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
      delete doc.mesh;
      this.peers.clear();
      doc.networks = {};
      doc.tasks = {};
      await rm(this.file, { force: true });
    });
  }
}
