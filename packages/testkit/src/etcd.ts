/**
 * A real etcd for tests: Debian's `etcd` (etcd-server), 1 or 3 members on loopback ports picked
 * at random, data under a temp dir. Members can be stopped (SIGTERM or SIGKILL) and started again
 * with their data, so tests can take the store away and give it back. With `tls`, clients reach
 * it over https and must show a certificate of its test CA (etcd's --client-cert-auth).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePort } from './registry.js';
import type { Teardown } from './teardown.js';
import { createTestCa, type TestCa, type TestCert } from './pki.js';

const run = promisify(execFile);

export interface LocalEtcd {
  /** Client URLs, one per member (http://127.0.0.1:PORT, https:// with `tls`). */
  readonly endpoints: string[];
  readonly dir: string;
  /** With `tls`: the CA of etcd's certificates (it also signs client certificates etcd accepts) and one client certificate. */
  readonly tls?: { ca: TestCa; client: TestCert };
  /** The client URLs with another host in them (with `listenAll`: an address of this machine other processes, e.g. netns hosts, reach). */
  endpointsOn(host: string): string[];
  /** Stops member i (all when omitted); `kill`: SIGKILL instead of SIGTERM. Its data stays. */
  stopMember(i?: number, kill?: boolean): Promise<void>;
  /** Starts member i (all stopped ones when omitted) again on the same ports and data. */
  startMember(i?: number): Promise<void>;
  /** Stops every member and removes the data. */
  stop(): Promise<void>;
}

export interface StartEtcdOptions {
  members?: 1 | 3;
  /** Serve clients on every address of this machine (0.0.0.0), not only loopback: for hosts in network namespaces. */
  listenAll?: boolean;
  /** Serve clients over TLS and require a client certificate of the test CA; `hosts`: more addresses for the server certificate than 127.0.0.1. */
  tls?: boolean | { hosts?: string[] };
  /**
   * An `etcdctl snapshot save` file: each member's data dir is made from it first with `etcdctl
   * snapshot restore` (its name, peer URL and the new cluster's members), as an operator restores
   * a backup into a new etcd.
   */
  restore?: string;
  t?: Teardown;
}

interface Member {
  name: string;
  client: string;
  peer: string;
  child?: ChildProcess;
  exited?: Promise<void>;
  logs: string[];
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<LocalEtcd> {
  // The loopback ports are picked free, then bound by etcd a moment later: a test running beside
  // this one can take one in between. Then the whole cluster starts again on fresh ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEtcdOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test(String((err as Error).message))) throw err;
    }
  }
}

async function startEtcdOnce(opts: StartEtcdOptions): Promise<LocalEtcd> {
  const n = opts.members ?? 1;
  const dir = await mkdtemp(join(tmpdir(), 'swarmd-etcd-'));
  let tls: { ca: TestCa; client: TestCert; server: TestCert } | undefined;
  if (opts.tls) {
    const ca = await createTestCa(join(dir, 'tls'), 'etcd-ca');
    const hosts = ['127.0.0.1', ...(typeof opts.tls === 'object' ? (opts.tls.hosts ?? []) : [])];
    tls = { ca, server: await ca.issue('etcd-server', { server: hosts }), client: await ca.issue('etcd-client') };
  }
  const scheme = tls ? 'https' : 'http';
  const members: Member[] = [];
  for (let i = 0; i < n; i++) {
    members.push({ name: `e${i}`, client: `${scheme}://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}`, logs: [] });
  }
  const initial = members.map((m) => `${m.name}=${m.peer}`).join(',');
  if (opts.restore) {
    for (const m of members) {
      const args = ['snapshot', 'restore', opts.restore, '--name', m.name, '--data-dir', join(dir, m.name), '--initial-cluster', initial, '--initial-cluster-token', 'swarmd-test', '--initial-advertise-peer-urls', m.peer];
      try {
        await run('etcdctl', args, { env: { ...process.env, ETCDCTL_API: '3' } });
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw new Error(`testkit: etcdctl snapshot restore ${opts.restore} failed: ${(err as { stderr?: string }).stderr ?? String(err)}`, { cause: err });
      }
    }
  }

  const launch = (m: Member): void => {
    const args = [
      '--name', m.name,
      '--data-dir', join(dir, m.name),
      '--listen-client-urls', opts.listenAll ? m.client.replace('127.0.0.1', '0.0.0.0') : m.client,
      '--advertise-client-urls', m.client,
      '--listen-peer-urls', m.peer,
      '--initial-advertise-peer-urls', m.peer,
      '--initial-cluster', initial,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', 'swarmd-test',
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--log-level', 'error',
      ...(tls ? ['--cert-file', tls.server.certFile, '--key-file', tls.server.keyFile, '--trusted-ca-file', tls.ca.certFile, '--client-cert-auth'] : []),
    ];
    const child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    m.logs.length = 0;
    child.stdout.on('data', (d: Buffer) => m.logs.push(d.toString()));
    child.stderr.on('data', (d: Buffer) => m.logs.push(d.toString()));
    child.once('error', (e) => m.logs.push(String(e)));
    m.child = child;
    m.exited = new Promise<void>((res) => child.once('exit', () => res()));
  };

  const stopOne = async (m: Member, kill: boolean): Promise<void> => {
    const c = m.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(kill ? 'SIGKILL' : 'SIGTERM');
    await Promise.race([m.exited, sleep(5000)]);
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await m.exited;
    m.child = undefined;
  };

  const healthy1 = (url: string): Promise<boolean> =>
    new Promise((res) => {
      const onAnswer = (r: IncomingMessage): void => {
        let body = '';
        r.on('data', (d: Buffer) => (body += d.toString()));
        r.on('end', () => res(/"health":\s*"true"/.test(body)));
      };
      const req = tls ? httpsGet(url, { ca: tls.ca.certPem, cert: tls.client.certPem, key: tls.client.keyPem }, onAnswer) : httpGet(url, onAnswer);
      req.setTimeout(2000, () => req.destroy());
      req.once('error', () => res(false)); // not serving yet
    });

  const healthy = async (m: Member): Promise<void> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (m.child && (m.child.exitCode !== null || m.child.signalCode !== null)) {
        throw new Error(`testkit: etcd ${m.name} exited at start: ${m.logs.join('').slice(-800)}`);
      }
      if (await healthy1(`${m.client}/health`)) return;
      if (Date.now() > deadline) throw new Error(`testkit: etcd ${m.name} not healthy on ${m.client}: ${m.logs.join('').slice(-800)}`);
      await sleep(100);
    }
  };

  const pick = (i: number | undefined): Member[] => (i === undefined ? members : [members[i]]);
  const etcd: LocalEtcd = {
    endpoints: members.map((m) => m.client),
    dir,
    ...(tls ? { tls: { ca: tls.ca, client: tls.client } } : {}),
    endpointsOn: (host) => members.map((m) => m.client.replace('127.0.0.1', host)),
    stopMember: async (i, kill = false) => {
      await Promise.all(pick(i).map((m) => stopOne(m, kill)));
    },
    startMember: async (i) => {
      const ms = pick(i).filter((m) => !m.child);
      for (const m of ms) launch(m);
      // One member alone has no quorum in a 3-member cluster: health waits for the others only
      // when all of them were started here.
      if (ms.length === members.length || n === 1) await Promise.all(ms.map(healthy));
    },
    stop: async () => {
      await Promise.all(members.map((m) => stopOne(m, false)));
      await rm(dir, { recursive: true, force: true });
    },
  };
  opts.t?.teardown(() => etcd.stop());
  for (const m of members) launch(m);
  try {
    await Promise.all(members.map(healthy));
  } catch (err) {
    await etcd.stop();
    throw err;
  }
  return etcd;
}
