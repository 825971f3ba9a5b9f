/**
 * A private dockerd for the tests and benches that drive Docker: its own --data-root, --exec-root,
 * unix socket, pidfile and cgroup parent under one directory, and its own (supervised) containerd
 * there, so nothing collides with another daemon on the machine. `stop` ends it (SIGTERM, SIGKILL
 * after 15 s), unmounts what is left below its directory and removes its cgroup.
 *
 * A dockerd with default options turns the root namespace's FORWARD policy to DROP and adds
 * DOCKER chains (and, through br_netfilter, makes bridged traffic pass iptables), which breaks
 * the network tests that run after it. `startPrivateDockerd` starts one that leaves the firewall
 * as it was (`--iptables=false`, no masquerade, a bridge of its own) and says what, if anything,
 * it changed all the same (undoing it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, run, type RunResult } from '@swarmd/common';
import type { Teardown } from './teardown.js';

export interface DockerBinaries {
  dockerd: string;
  docker: string;
}

/** dockerd and the docker CLI, or undefined when either is missing. */
export function findDocker(): DockerBinaries | undefined {
  const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
  const docker = ['/usr/bin/docker', '/usr/local/bin/docker'].find((p) => existsSync(p));
  return dockerd && docker ? { dockerd, docker } : undefined;
}

export function mustFindDocker(): DockerBinaries {
  const d = findDocker();
  if (!d) throw failedPrecondition('docker is not installed: this needs /usr/sbin/dockerd and the docker CLI (apt-get install docker.io)');
  return d;
}

export interface DockerdOptions {
  /** Everything of this daemon lives below it. */
  dir: string;
  /** e.g. /swarmd-bench-docker */
  cgroupParent: string;
  /** More dockerd flags (networking, registries...). */
  args: string[];
  /** A network namespace (/run/netns/NAME) to run dockerd in (through `nsenter --net`); default the root one. */
  netns?: string;
}

export class Dockerd {
  private exited = false;

  private constructor(
    readonly bin: DockerBinaries,
    readonly o: DockerdOptions,
    private readonly child: ChildProcess,
  ) {
    child.on('exit', () => (this.exited = true));
  }

  get sock(): string {
    return join(this.o.dir, 'exec', 'docker.sock');
  }

  get log(): string {
    return join(this.o.dir, 'dockerd.log');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Starts dockerd and waits (60 s at most) until it answers. */
  static async start(bin: DockerBinaries, o: DockerdOptions): Promise<Dockerd> {
    const execRoot = join(o.dir, 'exec');
    await mkdir(execRoot, { recursive: true });
    const logFd = openSync(join(o.dir, 'dockerd.log'), 'a');
    // nsenter execs dockerd (no fork for a net namespace): the child is dockerd itself.
    const [cmd, pre] = o.netns ? ['nsenter', [`--net=${o.netns}`, '--', bin.dockerd]] : [bin.dockerd, []];
    // prettier-ignore
    const child = spawn(cmd, [
      ...pre,
      '--data-root', join(o.dir, 'data'),
      '--exec-root', execRoot,
      '--pidfile', join(execRoot, 'dockerd.pid'),
      '-H', `unix://${join(execRoot, 'docker.sock')}`,
      '--storage-driver', 'overlay2',
      '--cgroup-parent', o.cgroupParent,
      ...o.args,
    ], { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    const d = new Dockerd(bin, o, child);
    try {
      for (let i = 0; ; i++) {
        if (d.exited) throw new Error(`dockerd exited: ${await d.logTail()}`);
        if (await d.api('/version', 2_000).then(() => true, () => false)) break;
        if (i > 300) throw new Error(`dockerd did not answer in 60 s: ${await d.logTail()}`);
        await sleep(200);
      }
    } catch (e) {
      await d.stop();
      throw e;
    }
    return d;
  }

  async logTail(chars = 800): Promise<string> {
    return (await readFile(this.log, 'utf8').catch(() => '')).slice(-chars);
  }

  cli(args: string[]): Promise<RunResult> {
    return run(this.bin.docker, ['-H', `unix://${this.sock}`, ...args]);
  }

  /** GET on the Engine API over the unix socket (POST with `body` as JSON when given), as JSON. */
  api<T>(path: string, timeoutMs = 5_000, body?: unknown): Promise<T> {
    const method = body === undefined ? 'GET' : 'POST';
    const what = `docker API ${method} ${path}`;
    return new Promise((res, rej) => {
      const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
      const req = request({ socketPath: this.sock, path, method, headers, timeout: timeoutMs }, (r) => {
        let text = '';
        r.on('data', (d: Buffer) => (text += d.toString()));
        r.on('end', () => {
          if ((r.statusCode ?? 500) >= 400) return rej(new Error(`${what}: ${r.statusCode} ${text.trim()}`));
          try {
            res(JSON.parse(text) as T);
          } catch (e) {
            rej(new Error(`${what}: not JSON`, { cause: e }));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${what}: no answer in ${timeoutMs} ms`)));
      req.on('error', rej);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** Ends dockerd (and its containerd), unmounts what is left below its directory, removes its cgroup. */
  async stop(): Promise<void> {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      for (let i = 0; i < 150 && !this.exited; i++) await sleep(100);
      if (!this.exited) this.child.kill('SIGKILL');
      for (let i = 0; i < 50 && !this.exited; i++) await sleep(100);
    }
    // What it started and left behind (its containerd, shims): their command lines name our dir.
    for (const pid of await processesNaming(this.o.dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const m of await mountsUnder(this.o.dir)) await run('umount', ['-l', m]).catch(() => undefined);
    await removeCgroupDirs(this.o.cgroupParent);
  }
}

/** Mount points below `dir` (findmnt), deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const root = resolve(dir) + sep;
  const r = await run('findmnt', ['--raw', '--noheadings', '--output', 'TARGET']).catch(() => ({ stdout: '' }));
  return [...new Set(r.stdout.split('\n').filter((m) => m.startsWith(root)))].sort((a, b) => b.length - a.length);
}

/** The cgroup `path` (and the empty ones below it) in every hierarchy, v1 or v2. */
async function removeCgroupDirs(path: string): Promise<void> {
  const base = '/sys/fs/cgroup';
  const hierarchies = [base, ...(await readdir(base).catch(() => [] as string[])).map((h) => join(base, h))];
  for (const h of hierarchies) {
    const d = join(h, path);
    if (await stat(d).then((s) => s.isDirectory(), () => false)) await run('find', [d, '-depth', '-type', 'd', '-delete']).catch(() => undefined);
  }
}

async function processesNaming(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(`${dir}/`)) out.push(Number(e));
  }
  return out;
}

// ---- the firewall ----------------------------------------------------------------------------

/** The firewall as text (`iptables -t TABLE -S` of filter and nat), to see what dockerd changed. */
export async function firewallRules(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const table of ['filter', 'nat']) {
    const r = await run('iptables', ['-t', table, '-S']).catch(() => ({ stdout: '' }));
    out.set(table, r.stdout.split('\n').filter(Boolean));
  }
  return out;
}

const dockerish = (bridges: readonly string[]) => new RegExp(['DOCKER', 'docker_gwbridge', 'docker0', ...bridges].join('|'));

/**
 * What changed between two firewall snapshots that is Docker's doing: rules and chains added or
 * removed that name Docker or `bridges`, and any change of a chain's policy (`-P`). Rules others
 * add meanwhile (a local cluster's FORWARD accept for its own bridge) are not counted.
 */
export function dockerFirewallChanges(before: Map<string, string[]>, after: Map<string, string[]>, bridges: readonly string[]): string[] {
  const ours = dockerish(bridges);
  const out: string[] = [];
  for (const table of new Set([...before.keys(), ...after.keys()])) {
    const b = new Set(before.get(table));
    const a = new Set(after.get(table));
    for (const l of a) if (!b.has(l) && (l.startsWith('-P ') || ours.test(l))) out.push(`-t ${table} added: ${l}`);
    for (const l of b) if (!a.has(l) && (l.startsWith('-P ') || ours.test(l))) out.push(`-t ${table} removed: ${l}`);
  }
  return out;
}

/**
 * Undoes what dockerd added to the firewall, where that is safe: rules and chains that name
 * Docker or `bridges`, and a FORWARD policy it turned to DROP, this only when no other dockerd
 * runs. Returns what it did (or "unchanged").
 */
export async function restoreFirewall(before: Map<string, string[]>, bridges: readonly string[]): Promise<string> {
  const after = await firewallRules();
  const did: string[] = [];
  const ours = dockerish(bridges);
  for (const [table, lines] of after) {
    const old = new Set(before.get(table));
    const added = lines.filter((l) => !old.has(l));
    for (const l of added.filter((x) => x.startsWith('-A ') && ours.test(x))) {
      await run('sh', ['-c', `iptables -t ${table} -D ${l.slice(3)}`]).then(() => did.push(`-t ${table} ${l}: removed`), () => did.push(`-t ${table} ${l}: could not remove`));
    }
    for (const l of added.filter((x) => x.startsWith('-N ') && ours.test(x))) {
      const chain = l.slice(3).trim();
      await run('iptables', ['-t', table, '-F', chain]).catch(() => undefined);
      await run('iptables', ['-t', table, '-X', chain]).then(() => did.push(`-t ${table} chain ${chain}: removed`), () => did.push(`-t ${table} chain ${chain}: in use, left`));
    }
    const policy = added.find((x) => x === '-P FORWARD DROP');
    if (policy && table === 'filter' && before.get(table)?.includes('-P FORWARD ACCEPT')) {
      const others = (await run('pgrep', ['-x', 'dockerd']).catch(() => ({ stdout: '' }))).stdout.trim();
      if (others) did.push('FORWARD policy DROP left as it is (another dockerd runs)');
      else await run('iptables', ['-P', 'FORWARD', 'ACCEPT']).then(() => did.push('FORWARD policy back to ACCEPT'));
    }
  }
  return did.length ? did.join('; ') : 'unchanged';
}

export const linkExists = (name: string): Promise<boolean> => run('ip', ['link', 'show', name]).then(() => true, () => false);

/** Makes a Linux bridge `name` with address `cidr` (one left by an aborted run is replaced). */
export async function makeBridge(name: string, cidr: string): Promise<void> {
  if (await linkExists(name)) await run('ip', ['link', 'del', name]);
  await run('ip', ['link', 'add', name, 'type', 'bridge']);
  await run('ip', ['addr', 'add', cidr, 'dev', name]);
  await run('ip', ['link', 'set', name, 'up']);
}

/** dockerd flags that keep it off the host's firewall: no iptables rules, no masquerade. */
export const NO_FIREWALL_ARGS: readonly string[] = ['--iptables=false', '--ip6tables=false', '--ip-masq=false'];

export interface PrivateDockerdOptions {
  /** Everything of this daemon lives below it (removed by stop). */
  dir: string;
  /** e.g. /swarmd-e2e-docker */
  cgroupParent: string;
  /** The default bridge of its containers (and its builds' RUN steps), made here: a Linux bridge name and its address/prefix. */
  bridge: { name: string; cidr: string };
  /** host:port or CIDRs of registries it may push to and pull from over plain HTTP. */
  insecureRegistries?: string[];
  /** Registers stop() so the daemon goes away even when the test fails. */
  t?: Teardown;
}

export interface PrivateDockerd {
  daemon: Dockerd;
  /** DOCKER_HOST for clients (unix://…/docker.sock). */
  host: string;
  /** Stops the daemon, removes its bridge and directory, undoes any firewall change it made; returns the changes found (none expected). Safe to call twice. */
  stop(): Promise<string[]>;
}

/** A private dockerd that leaves the host's firewall as it was (see the top of this file). */
export async function startPrivateDockerd(o: PrivateDockerdOptions): Promise<PrivateDockerd> {
  const bin = mustFindDocker();
  const before = await firewallRules();
  const bridges = [o.bridge.name];
  let daemon: Dockerd | undefined;
  let stopped: Promise<string[]> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await daemon?.stop();
      if (await linkExists(o.bridge.name)) await run('ip', ['link', 'del', o.bridge.name]).catch(() => undefined);
      const changes = dockerFirewallChanges(before, await firewallRules(), bridges);
      if (changes.length) await restoreFirewall(before, bridges);
      await rm(o.dir, { recursive: true, force: true });
      return changes;
    })());
  o.t?.teardown(stop);
  try {
    await makeBridge(o.bridge.name, o.bridge.cidr);
    const args = [...NO_FIREWALL_ARGS, `--bridge=${o.bridge.name}`, ...(o.insecureRegistries ?? []).flatMap((r) => ['--insecure-registry', r])];
    daemon = await Dockerd.start(bin, { dir: o.dir, cgroupParent: o.cgroupParent, args });
  } catch (err) {
    await stop();
    throw err;
  }
  return { daemon, host: `unix://${daemon.sock}`, stop };
}
