/**
 * Hosts as network namespaces on one machine: an underlay bridge with the gateway address in the
 * root namespace, and one netns per host joined to it by a veth (eth0 inside, the host's address
 * on the subnet, lo up, no default route). Enter a host with `nsenter --net=/run/netns/NAME`
 * (not `ip netns exec`, which remounts /sys and hides the cgroup tree).
 *
 * Every step is undone by `removeUnderlay`, which is idempotent and tolerates half-made state.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common/exec';

const ip = (args: string[]) => run('ip', args);

export interface UnderlayHost {
  netns: string;
  /** The veth end in the root namespace (on the bridge); eth0 inside the netns. */
  veth: string;
  /** Address without prefix length. */
  addr: string;
}

export interface Underlay {
  bridge: string;
  /** e.g. 10.250.0.1/24 */
  gatewayCidr: string;
  /** Whether an iptables FORWARD accept rule for the bridge was inserted. */
  forwardRule: boolean;
  hosts: UnderlayHost[];
}

export function netnsPath(netns: string): string {
  return `/run/netns/${netns}`;
}

/** The IPv4 addresses in use on this machine's root namespace (to refuse a clashing subnet). */
export async function rootAddresses(): Promise<string[]> {
  const { stdout } = await ip(['-4', '-o', 'addr', 'show']);
  return [...stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]);
}

function forwardRuleArgs(op: '-I' | '-D' | '-C', bridge: string): string[] {
  return [op, 'FORWARD', '-i', bridge, '-o', bridge, '-j', 'ACCEPT'];
}

/** Creates the bridge with its gateway address; inserts the FORWARD accept rule if iptables exists. */
export async function createBridge(bridge: string, gatewayCidr: string): Promise<{ forwardRule: boolean }> {
  await ip(['link', 'add', bridge, 'type', 'bridge']);
  await ip(['addr', 'add', gatewayCidr, 'dev', bridge]);
  await ip(['link', 'set', bridge, 'up']);
  // Once dockerd has run, FORWARD's policy is DROP and bridged frames pass iptables
  // (br_netfilter): allow this underlay explicitly. Overlay networks' VXLAN (udp 4789 between
  // hosts' addresses) is bridged traffic of this bridge too, so the same rule lets it through.
  try {
    await run('iptables', forwardRuleArgs('-I', bridge));
    return { forwardRule: true };
  } catch {
    return { forwardRule: false }; // no iptables: nothing filters bridged traffic
  }
}

/** Adds one host: its netns, a veth to the bridge, its address. */
export async function addHost(bridge: string, h: UnderlayHost, prefixLen: number): Promise<void> {
  await ip(['netns', 'add', h.netns]);
  await ip(['link', 'add', h.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.netns]);
  await ip(['link', 'set', h.veth, 'master', bridge, 'up']);
  await ip(['-n', h.netns, 'link', 'set', 'lo', 'up']);
  await ip(['-n', h.netns, 'addr', 'add', `${h.addr}/${prefixLen}`, 'dev', 'eth0']);
  await ip(['-n', h.netns, 'link', 'set', 'eth0', 'up']);
}

/** Removes namespaces, links and the FORWARD rule; missing pieces are fine. */
export async function removeUnderlay(u: { bridge: string; netns: readonly string[]; vethes?: readonly string[] }): Promise<void> {
  for (const ns of u.netns) await ip(['netns', 'del', ns]).catch(() => undefined);
  for (const v of u.vethes ?? []) await ip(['link', 'del', v]).catch(() => undefined);
  await ip(['link', 'del', u.bridge]).catch(() => undefined);
  // The rule may have been inserted more than once by an interrupted run: remove all copies.
  for (let i = 0; i < 10; i++) {
    const present = await run('iptables', forwardRuleArgs('-C', u.bridge)).then(
      () => true,
      () => false,
    );
    if (!present) break;
    await run('iptables', forwardRuleArgs('-D', u.bridge)).catch(() => undefined);
  }
  // `ip netns del` finishes in the background: wait until the names are gone.
  for (let i = 0; i < 100; i++) {
    const left = await listNetns();
    if (!u.netns.some((ns) => left.includes(ns))) break;
    await sleep(20);
  }
}

export async function listNetns(): Promise<string[]> {
  const { stdout } = await ip(['netns', 'list']).catch(() => ({ stdout: '' }));
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
}

export async function linkExists(name: string): Promise<boolean> {
  return ip(['link', 'show', name]).then(
    () => true,
    () => false,
  );
}
