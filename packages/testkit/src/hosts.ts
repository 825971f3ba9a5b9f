/**
 * N "hosts" on one machine: a network namespace each, joined by a veth to an underlay bridge on a
 * private subnet of its own, with a state dir per host. Hosts have no default route: they reach
 * each other and the bridge's gateway address (where a test registry can listen), nothing else.
 *
 * Enter a host with `nsenter --net=<nsPath>` (not `ip netns exec`, which remounts /sys and hides
 * the cgroup tree).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { run, type RunOptions, type RunResult } from '@swarmd/common';
import type { Teardown } from './teardown.js';

export interface TestHost {
  readonly index: number;
  /** Network namespace name (ip netns). */
  readonly netns: string;
  /** /run/netns/<name>, for nsenter --net= or a container's netns path. */
  readonly nsPath: string;
  /** The host's underlay address (no prefix length). */
  readonly addr: string;
  readonly stateDir: string;
  /** Runs a program inside the host's network namespace. */
  exec(cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Starts a long-lived program inside the host's network namespace. */
  spawn(cmd: string, args: readonly string[], opts?: SpawnOptions): ChildProcess;
}

export interface TestHosts {
  readonly id: string;
  readonly bridge: string;
  /** e.g. 10.231.17.0/24 */
  readonly subnet: string;
  /** The bridge's own address in the root namespace (reachable from every host). */
  readonly gateway: string;
  readonly hosts: readonly TestHost[];
  destroy(): Promise<void>;
}

export interface CreateHostsOptions {
  t?: Teardown;
  /** Third octet of 10.231.X.0/24; chosen at random among unused ones by default. */
  subnetIndex?: number;
}

const ip = (args: string[], o?: RunOptions) => run('ip', args, o);

async function usedSubnets(): Promise<Set<string>> {
  const { stdout } = await ip(['-4', '-o', 'addr', 'show']);
  return new Set([...stdout.matchAll(/inet (\d+\.\d+\.\d+)\.\d+\//g)].map((m) => m[1]));
}

async function chooseSubnet(pref?: number): Promise<number> {
  if (pref !== undefined) return pref;
  const used = await usedSubnets();
  for (let i = 0; i < 64; i++) {
    const x = 1 + (randomBytes(1)[0] % 250);
    if (!used.has(`10.231.${x}`)) return x;
  }
  throw new Error('testkit: no free 10.231.X.0/24 subnet');
}

export async function createHosts(n: number, opts: CreateHostsOptions = {}): Promise<TestHosts> {
  if (n < 1 || n > 200) throw new Error(`testkit: host count ${n} out of range 1..200`);
  const id = randomBytes(3).toString('hex');
  const bridge = `swt${id}br`;
  const x = await chooseSubnet(opts.subnetIndex);
  const prefix = `10.231.${x}`;
  const subnet = `${prefix}.0/24`;
  const gateway = `${prefix}.1`;
  const baseDir = await mkdtemp(join(tmpdir(), `swarmd-hosts-${id}-`));
  const netnsNames: string[] = [];
  let forwardRule = false;

  const destroy = async () => {
    for (const ns of netnsNames) await ip(['netns', 'del', ns]).catch(() => undefined);
    await ip(['link', 'del', bridge]).catch(() => undefined);
    if (forwardRule) await run('iptables', ['-D', 'FORWARD', '-i', bridge, '-o', bridge, '-j', 'ACCEPT']).catch(() => undefined);
    // `ip netns del` finishes in the background: wait until the names are gone.
    for (let i = 0; i < 50; i++) {
      const { stdout } = await ip(['netns', 'list']).catch(() => ({ stdout: '' }));
      if (!netnsNames.some((ns) => stdout.includes(ns))) break;
      await sleep(20);
    }
    await rm(baseDir, { recursive: true, force: true });
  };
  opts.t?.teardown(destroy);

  try {
    await ip(['link', 'add', bridge, 'type', 'bridge']);
    await ip(['addr', 'add', `${gateway}/24`, 'dev', bridge]);
    await ip(['link', 'set', bridge, 'up']);
    // Once dockerd has run, FORWARD's policy is DROP and bridged frames pass iptables
    // (br_netfilter): allow this underlay explicitly.
    try {
      await run('iptables', ['-I', 'FORWARD', '-i', bridge, '-o', bridge, '-j', 'ACCEPT']);
      forwardRule = true;
    } catch {
      /* no iptables: nothing filters bridged traffic */
    }
    const hosts: TestHost[] = [];
    for (let i = 1; i <= n; i++) {
      const netns = `swt${id}h${i}`;
      const vethHost = `swt${id}v${i}`;
      const addr = `${prefix}.${i + 1}`;
      await ip(['netns', 'add', netns]);
      netnsNames.push(netns);
      const nsPath = `/run/netns/${netns}`;
      await ip(['link', 'add', vethHost, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
      await ip(['link', 'set', vethHost, 'master', bridge, 'up']);
      await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      await ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
      const stateDir = await mkdtemp(join(baseDir, `h${i}-`));
      hosts.push({
        index: i,
        netns,
        nsPath,
        addr,
        stateDir,
        exec: (cmd, args, o) => run('nsenter', [`--net=${nsPath}`, '--', cmd, ...args], o),
        spawn: (cmd, args, o) => spawn('nsenter', [`--net=${nsPath}`, '--', cmd, ...args], o ?? {}),
      });
    }
    return { id, bridge, subnet, gateway, hosts, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}
