/**
 * Per-host bridge networking (Docker's default bridge, until overlay networks exist): one bridge
 * per swarmd instance (named from the node id), a veth per container into a netns of its own,
 * host-local IPAM (ipam.ts), nftables masquerade for outbound traffic and DNAT for ports
 * published in mode=host. `--network host` joins the agent's netns; `--network none` gets a
 * netns with only lo.
 *
 * Host-side commands run in `hostNetns` (a path; `nsenter --net=`) when given, else in the
 * agent's own netns. The nft table is regenerated whole from the IPAM state on every change
 * (`nft -f`: delete + add in one transaction), so it always matches what is allocated.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PortConfig_Protocol, PortConfig_PublishMode, type PortConfig, type Task } from '@swarmd/proto';
import { nullLogger, run, type Logger } from '@swarmd/common';
import type { TaskNetwork, TaskNetworking } from '../executor/container-executor.js';
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

/**
 * nftables' binary by absolute path: under npm scripts PATH starts with node_modules/.bin, where
 * @vercel/nft (a dev tool) is also called `nft`.
 */
export const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/local/sbin/nft'].find((p) => existsSync(p)) ?? 'nft';

const h = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);

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
  private lock: Promise<unknown> = Promise.resolve();
  private bridgeReady = false;

  constructor(private readonly o: BridgeNetworkingOptions) {
    this.key = h(o.nodeId, 8);
    this.bridge = `swd${this.key}`;
    this.table = `swarmd_${this.key}`;
    this.subnet = o.subnet ?? `172.31.${1 + (parseInt(h(o.nodeId, 4), 16) % 254)}.0/24`;
    parseSubnet(this.subnet);
    this.gateway = gatewayOf(this.subnet);
    this.ipam = new IpamFile(join(o.stateDir, 'networking', 'ipam.json'));
    this.log = o.logger ?? nullLogger;
  }

  /** The netns name (ip netns) and veth name of a task. */
  names(taskId: string): { netns: string; veth: string; nsPath: string } {
    const t = h(`${this.o.nodeId}/${taskId}`, 8);
    const netns = `swd${this.key}-${t}`;
    return { netns, veth: `swv${t}`, nsPath: `/run/netns/${netns}` };
  }

  private hostNetnsPath(): string {
    return this.o.hostNetns ?? `/proc/${process.pid}/ns/net`;
  }

  private host(cmd: string, args: string[], opts: { input?: string; okCodes?: number[] } = {}) {
    return this.o.hostNetns ? run('nsenter', [`--net=${this.o.hostNetns}`, cmd, ...args], opts) : run(cmd, args, opts);
  }

  private inNs(nsPath: string, cmd: string, args: string[]) {
    return run('nsenter', [`--net=${nsPath}`, cmd, ...args]);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.lock.then(fn, fn);
    this.lock = p.catch(() => undefined);
    return p;
  }

  /** The address of a task on the bridge, if it has one. */
  async addressOf(taskId: string): Promise<string | undefined> {
    return (await this.ipam.load(this.subnet)).tasks[taskId]?.ip;
  }

  attach(task: Task): Promise<TaskNetwork> {
    return this.serial(() => this.doAttach(task));
  }

  detach(taskId: string): Promise<void> {
    return this.serial(() => this.doDetach(taskId));
  }

  private async linkExists(name: string): Promise<boolean> {
    const r = await this.host('ip', ['link', 'show', 'dev', name], { okCodes: [0, 1] });
    return r.code === 0;
  }

  private async ensureBridge(): Promise<void> {
    if (this.bridgeReady) return;
    if (!(await this.linkExists(this.bridge))) await this.host('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    await this.host('ip', ['addr', 'replace', `${this.gateway}/${parseSubnet(this.subnet).bits}`, 'dev', this.bridge]);
    await this.host('ip', ['link', 'set', this.bridge, 'up']);
    await this.host('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    // Published ports reached through 127.0.0.1 of the host.
    await this.host('sysctl', ['-qw', `net.ipv4.conf.${this.bridge}.route_localnet=1`]).catch(() => undefined);
    this.bridgeReady = true;
  }

  private async ensureNetns(name: string, nsPath: string): Promise<void> {
    const r = await run('ip', ['netns', 'list']);
    if (!r.stdout.split('\n').some((l) => l.split(' ')[0] === name)) await run('ip', ['netns', 'add', name]);
    await this.inNs(nsPath, 'ip', ['link', 'set', 'lo', 'up']);
  }

  private async doAttach(task: Task): Promise<TaskNetwork> {
    const mode = networkModeOf(task);
    if (mode === 'host') return { netnsPath: this.hostNetnsPath(), ports: [], addresses: [] };
    const { netns, veth, nsPath } = this.names(task.id);
    const state = await this.ipam.load(this.subnet);
    if (mode === 'none') {
      state.tasks[task.id] = { mode: 'none', ports: [] };
      await this.ipam.save(state);
      await this.ensureNetns(netns, nsPath);
      return { netnsPath: nsPath, ports: [], addresses: [] };
    }
    const prev = state.tasks[task.id];
    const ports = hostPorts(task);
    for (const p of ports) {
      const other = portConflict(state, task.id, p);
      if (other) throw Object.assign(new Error(`port ${p.published}/${p.protocol} is already published by task ${other} on this node`), { code: 'FAILED_PRECONDITION' });
    }
    const ip = prev?.ip ?? allocateIp(state);
    state.tasks[task.id] = { mode: 'bridge', ip, ports };
    await this.ipam.save(state);
    await this.ensureBridge();
    await this.ensureNetns(netns, nsPath);
    if (!(await this.linkExists(veth))) {
      await this.host('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    }
    await this.host('ip', ['link', 'set', veth, 'master', this.bridge, 'up']);
    const bits = parseSubnet(this.subnet).bits;
    await this.inNs(nsPath, 'ip', ['addr', 'replace', `${ip}/${bits}`, 'dev', 'eth0']);
    await this.inNs(nsPath, 'ip', ['link', 'set', 'eth0', 'up']);
    await this.inNs(nsPath, 'ip', ['route', 'replace', 'default', 'via', this.gateway]);
    await this.writeRules(state);
    this.log.info('task attached to the bridge', { task: task.id, ip, ports });
    return { netnsPath: nsPath, ports: ports.map(toPortConfig), addresses: [`${ip}/${bits}`] };
  }

  private async doDetach(taskId: string): Promise<void> {
    const { netns, veth } = this.names(taskId);
    const state = await this.ipam.load(this.subnet);
    const had = state.tasks[taskId];
    await this.host('ip', ['link', 'del', veth], { okCodes: [0, 1] });
    await run('ip', ['netns', 'del', netns], { okCodes: [0, 1] });
    if (had) {
      delete state.tasks[taskId];
      if (had.mode === 'bridge') await this.writeRules(state);
      await this.ipam.save(state);
    }
  }

  /** The whole nft table for the current allocations. */
  rules(state: IpamState): string {
    const dnat: string[] = [];
    for (const a of Object.values<Allocation>(state.tasks)) {
      if (a.mode !== 'bridge' || !a.ip) continue;
      for (const p of a.ports) dnat.push(`    ${p.protocol} dport ${p.published} dnat to ${a.ip}:${p.target}`);
    }
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
      `    ip saddr 127.0.0.0/8 oifname "${this.bridge}" masquerade`,
      `  }`,
      `}`,
      '',
    ].join('\n');
  }

  private async writeRules(state: IpamState): Promise<void> {
    // `add` makes sure the table exists so the `delete` in the same transaction succeeds.
    const script = `add table ip ${this.table}\ndelete table ip ${this.table}\n${this.rules(state)}`;
    const file = join(this.o.stateDir, 'networking', 'rules.nft');
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, script);
    await this.host(NFT, ['-f', file]);
  }

  /** Removes the bridge and the nft table (every task detached first). For leave/teardown. */
  async destroy(): Promise<void> {
    await this.serial(async () => {
      const state = await this.ipam.load(this.subnet);
      for (const id of Object.keys(state.tasks)) await this.doDetach(id);
      await this.host(NFT, ['delete', 'table', 'ip', this.table], { okCodes: [0, 1] });
      await this.host('ip', ['link', 'del', this.bridge], { okCodes: [0, 1] });
      this.bridgeReady = false;
    });
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
