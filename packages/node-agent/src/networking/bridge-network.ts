/**
 * Per-host bridge networking (Docker's default bridge, until overlay networks exist): one bridge
 * per swarmd instance (named from the node id), a veth per container into a netns of its own,
 * host-local IPAM (ipam.ts), nftables masquerade for outbound traffic and DNAT for ports
 * published in mode=host. `--network host` joins the agent's netns; `--network none` gets a
 * netns with only lo. It owns every host port of the node: the overlay layer's tasks publish
 * theirs here too (claimPorts / publishPorts / releasePorts), so one table and one conflict check
 * cover both.
 *
 * Host-side commands run in `hostNetns` (a path; `nsenter --net=`) when given, else in the
 * agent's own netns. The nft table is regenerated whole from the IPAM state on every change
 * (`nft -f`: delete + add in one transaction), so it always matches what is allocated; an attach
 * that leaves it as it was loads nothing.
 *
 * Only nft loads and IPAM saves are serialized (changes made meanwhile share the next save; the
 * file is read once). Tasks attach side by side, one spawn each (`sh` running an `ip -batch` on
 * the host side and one inside the task's netns): 50 tasks created at once on one host no longer
 * queue behind each other's eleven `ip` and `nft` calls.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PortConfig_Protocol, PortConfig_PublishMode, type PortConfig, type Task } from '@swarmd/proto';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { HostExec, NFT } from './host-exec.js';
import { afterFirstNetns, keyedQueue, serialQueue } from './serial.js';
import type { AttachOptions, TaskNetwork, TaskNetworking } from '../executor/container-executor.js';
import { allocateIp, gatewayOf, IpamFile, parseSubnet, portConflict, type Allocation, type IpamState, type PublishedPort } from './ipam.js';

export interface BridgeNetworkingOptions {
  nodeId: string;
  /** Holds networking/ipam.json. */
  stateDir: string;
  /** e.g. 172.31.7.0/24; by default 172.31.X.0/24 with X from the node id. */
  subnet?: string;
  /** The host's netns (a path) when the agent does not run in it (tests); default: the agent's own. */
  hostNetns?: string;
  logger?: Logger;
}

export { NFT };

const h = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);

/** A task's network namespace (`ip netns`: machine-wide names, so keyed by node and task). */
export function taskNetns(nodeId: string, taskId: string): { netns: string; nsPath: string } {
  const netns = `swd${h(nodeId, 8)}-${h(`${nodeId}/${taskId}`, 8)}`;
  return { netns, nsPath: `/run/netns/${netns}` };
}

/** The network mode a task asks for: its first network attachment's target (host | none), else bridge. */
export function networkModeOf(t: Task): 'bridge' | 'host' | 'none' {
  const target = t.spec?.networks[0]?.target ?? '';
  return target === 'host' || target === 'none' ? target : 'bridge';
}

/** Ports published in mode=host (published 0: the target port). */
export function hostPorts(t: Task): PublishedPort[] {
  const ports = t.endpoint?.spec?.ports.length ? t.endpoint.spec.ports : (t.endpoint?.ports ?? []);
  return ports
    .filter((p) => p.publishMode === PortConfig_PublishMode.HOST && p.targetPort > 0)
    .map((p) => ({ protocol: p.protocol === PortConfig_Protocol.UDP ? ('udp' as const) : ('tcp' as const), published: p.publishedPort || p.targetPort, target: p.targetPort }));
}

export class BridgeNetworking implements TaskNetworking {
  readonly bridge: string;
  readonly table: string;
  readonly subnet: string;
  readonly gateway: string;
  private readonly key: string;
  private readonly ipam: IpamFile;
  private readonly log: Logger;
  private readonly exec: HostExec;
  /** nft loads, one at a time. */
  private readonly serial = serialQueue();
  /** The allocations: read from the file once, then changed here and saved (only we write it). */
  private loading: Promise<IpamState> | undefined;
  /** A save not started yet: whoever changes the allocations before it starts waits for it. */
  private nextSave: Promise<void> | undefined;
  private saves: Promise<void> = Promise.resolve();
  /** Attach and detach of one task, in order; different tasks run side by side. */
  private readonly perTask = keyedQueue();
  private bridgeReady: Promise<void> | undefined;
  /** The nft table as last loaded (no reload when an attach does not change it). */
  private loaded: string | undefined;

  constructor(private readonly o: BridgeNetworkingOptions) {
    this.key = h(o.nodeId, 8);
    this.bridge = `swd${this.key}`;
    this.table = `swarmd_${this.key}`;
    this.subnet = o.subnet ?? `172.31.${1 + (parseInt(h(o.nodeId, 4), 16) % 254)}.0/24`;
    parseSubnet(this.subnet);
    this.gateway = gatewayOf(this.subnet);
    this.ipam = new IpamFile(join(o.stateDir, 'networking', 'ipam.json'));
    this.log = o.logger ?? nullLogger;
    this.exec = new HostExec(o.hostNetns);
  }

  /** The netns name (ip netns) and veth name of a task. */
  names(taskId: string): { netns: string; veth: string; nsPath: string } {
    return { ...taskNetns(this.o.nodeId, taskId), veth: `swv${h(`${this.o.nodeId}/${taskId}`, 8)}` };
  }

  private host(cmd: string, args: string[], opts: { input?: string; okCodes?: number[] } = {}) {
    return this.exec.run(cmd, args, opts);
  }

  private ipScript(steps: { nsPath?: string; lines: string[] }[]) {
    return this.exec.script(steps);
  }

  /** The address of a task on the bridge, if it has one. */
  async addressOf(taskId: string): Promise<string | undefined> {
    return (await this.allocations()).tasks[taskId]?.ip;
  }

  private allocations(): Promise<IpamState> {
    this.loading ??= this.ipam.load(this.subnet).catch((err: unknown) => {
      this.loading = undefined;
      throw err;
    });
    return this.loading;
  }

  /** Saves the allocations as they are when the save starts; saves run one after another. */
  private persist(state: IpamState): Promise<void> {
    this.nextSave ??= this.saves = this.saves
      .catch(() => undefined)
      .then(() => {
        this.nextSave = undefined;
        return this.ipam.save(state);
      });
    return this.nextSave;
  }

  attach(task: Task, o: AttachOptions = {}): Promise<TaskNetwork> {
    return this.perTask(task.id, () => this.doAttach(task, o));
  }

  detach(taskId: string): Promise<void> {
    return this.perTask(taskId, () => this.doDetach(taskId));
  }

  private linkExists(name: string): Promise<boolean> {
    return this.exec.linkExists(name);
  }

  private ensureBridge(): Promise<void> {
    this.bridgeReady ??= this.makeBridge().catch((err: unknown) => {
      this.bridgeReady = undefined;
      throw err;
    });
    return this.bridgeReady;
  }

  private async makeBridge(): Promise<void> {
    if (!(await this.linkExists(this.bridge))) await this.host('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    await this.host('ip', ['addr', 'replace', `${this.gateway}/${parseSubnet(this.subnet).bits}`, 'dev', this.bridge]);
    await this.host('ip', ['link', 'set', this.bridge, 'up']);
    await this.host('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    // Published ports reached through 127.0.0.1 of the host.
    await this.host('sysctl', ['-qw', `net.ipv4.conf.${this.bridge}.route_localnet=1`]).catch(() => undefined);
  }

  private async doAttach(task: Task, o: AttachOptions): Promise<TaskNetwork> {
    const mode = networkModeOf(task);
    if (mode === 'host') return { netnsPath: this.exec.netnsPath(), ports: [], addresses: [] };
    const { netns, veth, nsPath } = this.names(task.id);
    const state = await this.allocations();
    if (mode === 'none') {
      state.tasks[task.id] = { mode: 'none', ports: [] };
      await this.persist(state);
      const add = existsSync(nsPath) ? [] : [{ lines: [`netns add ${netns}`] }];
      await afterFirstNetns(() => this.ipScript([...add, { nsPath, lines: ['link set lo up'] }]));
      return { netnsPath: nsPath, ports: [], addresses: [] };
    }
    const ports = hostPorts(task);
    // Allocation is synchronous on the shared state (no await between check and claim).
    refuseConflicts(state, task.id, ports);
    const prev = state.tasks[task.id];
    const ip = prev?.ip ?? allocateIp(state);
    const fresh = !prev;
    state.tasks[task.id] = { mode: 'bridge', ip, ports };
    await this.persist(state);
    // Links and addresses outside the lock: tasks attach side by side, one spawn each.
    await this.ensureBridge();
    // A task seen for the first time has no veth yet: its allocation is saved before any link.
    const addVeth = fresh || !(await this.linkExists(veth));
    const bits = parseSubnet(this.subnet).bits;
    let addNetns = !existsSync(nsPath);
    if (o.onNetns) {
      // The netns first, on its own: a container create joins it while the links are made.
      if (addNetns) await afterFirstNetns(() => this.host('ip', ['netns', 'add', netns]));
      addNetns = false;
      o.onNetns({ netnsPath: nsPath });
    }
    await afterFirstNetns(() =>
      this.ipScript([
        {
          lines: [
            ...(addNetns ? [`netns add ${netns}`] : []),
            ...(addVeth ? [`link add ${veth} type veth peer name eth0 netns ${netns}`] : []),
            `link set ${veth} master ${this.bridge} up`,
          ],
        },
        { nsPath, lines: ['link set lo up', `addr replace ${ip}/${bits} dev eth0`, 'link set eth0 up', `route replace default via ${this.gateway}`] },
      ]),
    );
    await this.serial(() => this.writeRules(state));
    this.log.info('task attached to the bridge', { task: task.id, ip, ports });
    return { netnsPath: nsPath, ports: ports.map(toPortConfig), addresses: [`${ip}/${bits}`] };
  }

  private async doDetach(taskId: string): Promise<void> {
    const { netns, veth } = this.names(taskId);
    const state = await this.allocations();
    const had = state.tasks[taskId];
    // No allocation, no links: an allocation is saved before any link is made and dropped only
    // once they are gone (a task released, then removed; an overlay task).
    if (!had) return;
    // One program for both (each spawn forks this large process); -force: either may be gone.
    const lines = [...(had.mode !== 'none' && had.mode !== 'overlay' ? [`link del ${veth}`] : []), `netns del ${netns}`];
    await this.host('ip', ['-force', '-batch', '-'], { input: `${lines.join('\n')}\n`, okCodes: [0, 1] });
    if (state.tasks[taskId] !== had) return;
    delete state.tasks[taskId];
    if (had.mode !== 'none') await this.serial(() => this.writeRules(state));
    await this.persist(state);
  }

  /**
   * Claims the ports a task attached by another layer (overlay) publishes in mode=host, to be
   * DNATed to `target.ip` on the bridge `target.dev`: refused (nothing changed) when another task
   * of the node publishes one of them, else saved before any link is made. publishPorts loads them.
   */
  claimPorts(taskId: string, target: { ip: string; dev: string }, ports: PublishedPort[]): Promise<void> {
    return this.perTask(taskId, async () => {
      const state = await this.allocations();
      refuseConflicts(state, taskId, ports);
      state.tasks[taskId] = { mode: 'overlay', ip: target.ip, dev: target.dev, ports };
      await this.persist(state);
    });
  }

  /** Loads the DNAT of ports claimed by claimPorts (the target's bridge exists by now): the ports, as reported. */
  publishPorts(taskId: string): Promise<PortConfig[]> {
    return this.perTask(taskId, async () => {
      const state = await this.allocations();
      const a = state.tasks[taskId];
      if (a?.mode !== 'overlay' || !a.dev) return [];
      // Published ports reached through 127.0.0.1 of the host (as on the bridge).
      await this.host('sysctl', ['-qw', `net.ipv4.conf.${a.dev}.route_localnet=1`]).catch(() => undefined);
      await this.serial(() => this.writeRules(state));
      this.log.info('host ports published for an overlay task', { task: taskId, ip: a.ip, ports: a.ports });
      return a.ports.map(toPortConfig);
    });
  }

  /** Releases the ports of a task claimed by claimPorts (its DNAT goes). */
  releasePorts(taskId: string): Promise<void> {
    return this.perTask(taskId, async () => {
      const state = await this.allocations();
      if (state.tasks[taskId]?.mode !== 'overlay') return;
      delete state.tasks[taskId];
      await this.serial(() => this.writeRules(state));
      await this.persist(state);
    });
  }

  /** The whole nft table for the current allocations. */
  rules(state: IpamState): string {
    const dnat: string[] = [];
    const devs = new Set<string>();
    for (const a of Object.values<Allocation>(state.tasks)) {
      if (a.mode === 'none' || !a.ip) continue;
      if (a.mode === 'overlay' && a.dev) devs.add(a.dev);
      for (const p of a.ports) dnat.push(`    ${p.protocol} dport ${p.published} dnat to ${a.ip}:${p.target}`);
    }
    // The bridges published ports reach from the host's 127.0.0.1 (route_localnet): this one and
    // the overlay bridges of tasks publishing ports. What comes in on them for 127/8 is dropped
    // (route_localnet would let a task reach the host's loopback services), replies excepted.
    const local = [this.bridge, ...[...devs].sort()].map((d) => `"${d}"`);
    const localDevs = local.length === 1 ? local[0] : `{ ${local.join(', ')} }`;
    return [
      `table ip ${this.table} {`,
      `  chain published {`,
      ...dnat,
      `  }`,
      `  chain prerouting { type nat hook prerouting priority dstnat; policy accept;`,
      `    fib daddr type local jump published`,
      `  }`,
      `  chain output { type nat hook output priority -100; policy accept;`,
      `    fib daddr type local jump published`,
      `  }`,
      `  chain postrouting { type nat hook postrouting priority srcnat; policy accept;`,
      `    ip saddr ${this.subnet} ip daddr != ${this.subnet} masquerade`,
      `    ip saddr 127.0.0.0/8 oifname ${localDevs} masquerade`,
      `  }`,
      `  chain input { type filter hook input priority filter; policy accept;`,
      `    iifname ${localDevs} ip daddr 127.0.0.0/8 ct state new drop`,
      `  }`,
      `}`,
      '',
    ].join('\n');
  }

  /** Loads the table for `state` as it is now (under the lock), unless it is the one loaded last. */
  private async writeRules(state: IpamState): Promise<void> {
    const rules = this.rules(state);
    if (rules === this.loaded) return;
    await this.exec.loadNftTable(this.table, rules, join(this.o.stateDir, 'networking', 'rules.nft'));
    this.loaded = rules;
  }

  /** Removes the bridge and the nft table (every task detached first). For leave/teardown. */
  async destroy(): Promise<void> {
    await Promise.all(Object.keys((await this.allocations()).tasks).map((id) => this.detach(id)));
    await this.serial(async () => {
      await this.exec.deleteNftTable(this.table);
      await this.host('ip', ['link', 'del', this.bridge], { okCodes: [0, 1] });
      this.bridgeReady = undefined;
      this.loaded = undefined;
    });
  }
}

/** Refuses ports another task of the node publishes (instead of shadowing its rule). */
function refuseConflicts(state: IpamState, taskId: string, ports: readonly PublishedPort[]): void {
  for (const p of ports) {
    const other = portConflict(state, taskId, p);
    if (other) throw Object.assign(new Error(`port ${p.published}/${p.protocol} is already published by task ${other} on this node`), { code: 'FAILED_PRECONDITION' });
  }
}

function toPortConfig(p: PublishedPort): PortConfig {
  return {
    name: '',
    protocol: p.protocol === 'udp' ? PortConfig_Protocol.UDP : PortConfig_Protocol.TCP,
    targetPort: p.target,
    publishedPort: p.published,
    publishMode: PortConfig_PublishMode.HOST,
  };
}
