/**
 * Docker swarms for the benches. A one-node Docker swarm on a private dockerd (@swarmd/testkit's dockerd.ts) that leaves the host's firewall as
 * it was: `--iptables=false`, its default bridge (or none) and `docker_gwbridge` on Linux bridges
 * named by the bench, the firewall compared before and after (DOCKER rules and a FORWARD policy
 * turned DROP undone, the latter only when no other dockerd runs). `swarm init` on 127.0.0.1.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { addHost, createBridge, netnsPath, removeUnderlay, type UnderlayHost } from '@swarmd/cli/local/underlay';
import { run } from '@swarmd/common';
import { Dockerd, firewallRules, linkExists, makeBridge, NO_FIREWALL_ARGS, restoreFirewall, type DockerBinaries } from '@swarmd/testkit/dockerd';
import type { Cleanups } from './local-cluster.js';

export interface DockerSwarmOptions {
  /** dockerd's directory (removed at the end). */
  dir: string;
  cgroupParent: string;
  /** dockerd's default bridge (made by us), or none (`--bridge=none`). */
  bridge?: { name: string; cidr: string };
  /** The Linux bridge name and subnet of `docker_gwbridge`. */
  gwBridge: string;
  gwSubnet: string;
  /** `swarm init --listen-addr` (on 127.0.0.1) and `--data-path-port`. */
  listen: string;
  dataPathPort: string;
  /** host:port of a registry dockerd may pull from over plain HTTP. */
  registry: string;
  /** More `swarm init` flags. */
  initArgs?: string[];
}

/**
 * Starts the daemon and makes it a one-node swarm; its undoing (swarm leave, dockerd stopped, our
 * bridges and its directory removed, the firewall checked) is registered in `cleanups` as `docker`
 * before anything starts.
 */
export async function startDockerSwarm(bin: DockerBinaries, o: DockerSwarmOptions, cleanups: Cleanups): Promise<Dockerd> {
  const fw = await firewallRules();
  const hadGw = await linkExists('docker_gwbridge');
  const ownBridges = [...(o.bridge ? [o.bridge.name] : []), o.gwBridge];
  const started: { d?: Dockerd } = {};
  cleanups.add('docker', async () => {
    if (started.d) {
      await started.d.cli(['swarm', 'leave', '--force']).catch(() => undefined);
      await started.d.stop();
    }
    for (const l of [...ownBridges, ...(hadGw ? [] : ['docker_gwbridge'])]) if (await linkExists(l)) await run('ip', ['link', 'del', l]).catch(() => undefined);
    await rm(o.dir, { recursive: true, force: true });
    console.log(`docker cleaned up (dockerd stopped, ${o.dir} removed); firewall after dockerd: ${await restoreFirewall(fw, ownBridges)}`);
  });
  const net = [...NO_FIREWALL_ARGS];
  if (o.bridge) {
    await makeBridge(o.bridge.name, o.bridge.cidr);
    net.push(`--bridge=${o.bridge.name}`);
  } else net.push('--bridge=none');
  const d = (started.d = await Dockerd.start(bin, { dir: o.dir, cgroupParent: o.cgroupParent, args: [...net, '--insecure-registry', o.registry] }));
  // Swarm mode wants a docker_gwbridge network: give it a Linux bridge name and subnet of ours.
  // prettier-ignore
  await d.cli(['network', 'create', '--driver', 'bridge', '--subnet', o.gwSubnet,
    '-o', `com.docker.network.bridge.name=${o.gwBridge}`, '-o', 'com.docker.network.bridge.enable_icc=false',
    '-o', 'com.docker.network.bridge.enable_ip_masquerade=false', 'docker_gwbridge']);
  await d.cli(['swarm', 'init', '--advertise-addr', '127.0.0.1', '--listen-addr', o.listen, '--data-path-port', o.dataPathPort, ...(o.initArgs ?? [])]);
  return d;
}

export interface DockerSwarmHostsOptions {
  /** Each host's dockerd lives in `dir`/dkN (all removed at the end). */
  dir: string;
  /** Names the netns (`prefix`N), the veths (`prefix`vN) and the cgroup parents (/`prefix`N). */
  prefix: string;
  hosts: number;
  /** The hosts' underlay: a bridge in the root namespace, `subnet` a /24 (gateway .1, hosts .2...). */
  underlay: { bridge: string; subnet: string };
  /** Each host's dockerd default bridge (made by us in its netns; the same name and subnet in each). */
  bridge: { name: string; cidr: string };
  /** `docker_gwbridge` in each host's netns. */
  gwBridge: string;
  gwSubnet: string;
  dataPathPort: string;
  /** host:port of a registry the hosts may pull from over plain HTTP (reached through the underlay's gateway). */
  registry: string;
}

/**
 * A Docker swarm of `hosts` nodes, each a private dockerd in a netns of its own on an underlay
 * bridge (the hosts of `swarmctl local up`, made by the same code): the first `swarm init`s on
 * its underlay address, the others join it as workers. Every dockerd runs with --iptables=false,
 * its default bridge and docker_gwbridge named by the bench; a default route through the
 * underlay's gateway reaches the registry. The undoing (dockerds stopped, netns, bridge and FORWARD
 * rule removed, the root firewall checked) is registered in `cleanups` as `docker` first.
 * Returns the daemons, the manager first.
 */
export async function startDockerSwarmHosts(bin: DockerBinaries, o: DockerSwarmHostsOptions, cleanups: Cleanups): Promise<Dockerd[]> {
  const fw = await firewallRules();
  const net24 = o.underlay.subnet.split('.').slice(0, 3).join('.');
  const hosts: UnderlayHost[] = Array.from({ length: o.hosts }, (_, i) => ({ netns: `${o.prefix}${i + 1}`, veth: `${o.prefix}v${i + 1}`, addr: `${net24}.${i + 2}` }));
  const daemons: Dockerd[] = [];
  cleanups.add('docker', async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await removeUnderlay({ bridge: o.underlay.bridge, netns: hosts.map((h) => h.netns), vethes: hosts.map((h) => h.veth) });
    await rm(o.dir, { recursive: true, force: true });
    console.log(`docker cleaned up (${daemons.length} dockerds stopped, their netns and ${o.dir} removed); firewall after dockerd: ${await restoreFirewall(fw, [o.underlay.bridge])}`);
  });
  await removeUnderlay({ bridge: o.underlay.bridge, netns: hosts.map((h) => h.netns), vethes: hosts.map((h) => h.veth) });
  await createBridge(o.underlay.bridge, `${net24}.1/24`);
  for (const h of hosts) {
    await addHost(o.underlay.bridge, h, 24);
    await run('ip', ['-n', h.netns, 'route', 'add', 'default', 'via', `${net24}.1`]);
    await run('ip', ['-n', h.netns, 'link', 'add', o.bridge.name, 'type', 'bridge']);
    await run('ip', ['-n', h.netns, 'addr', 'add', o.bridge.cidr, 'dev', o.bridge.name]);
    await run('ip', ['-n', h.netns, 'link', 'set', o.bridge.name, 'up']);
  }
  const net = ['--iptables=false', '--ip6tables=false', '--ip-masq=false', `--bridge=${o.bridge.name}`, '--insecure-registry', o.registry];
  // prettier-ignore
  const started = await Promise.all(hosts.map((h, i) => Dockerd.start(bin, { dir: join(o.dir, `dk${i + 1}`), cgroupParent: `/${o.prefix}${i + 1}`, netns: netnsPath(h.netns), args: net }).then((d) => (daemons.push(d), d))));
  for (const d of started)
    // prettier-ignore
    await d.cli(['network', 'create', '--driver', 'bridge', '--subnet', o.gwSubnet,
      '-o', `com.docker.network.bridge.name=${o.gwBridge}`, '-o', 'com.docker.network.bridge.enable_icc=false',
      '-o', 'com.docker.network.bridge.enable_ip_masquerade=false', 'docker_gwbridge']);
  const [m, ...workers] = started;
  const at = (i: number) => hosts[i].addr;
  await m.cli(['swarm', 'init', '--advertise-addr', at(0), '--listen-addr', `${at(0)}:2377`, '--data-path-port', o.dataPathPort]);
  const token = (await m.cli(['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
  for (const [i, w] of workers.entries()) await w.cli(['swarm', 'join', '--token', token, '--advertise-addr', at(i + 1), '--listen-addr', `${at(i + 1)}:2377`, `${at(0)}:2377`]);
  return started;
}
