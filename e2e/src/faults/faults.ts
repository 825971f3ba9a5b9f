/**
 * Faults on a local cluster, each a call that returns its undo. The undo is also registered on
 * the scope's teardown (ava's `t`, or the chaos runner's), so a failing test still heals the
 * cluster before `local down`; calling it twice does nothing the second time.
 *
 * Hosts are network namespaces on an underlay bridge (swarmctl local up): network faults are
 * nftables tables of our own (`e2e_fault_N`, family inet) in the hosts' netns, entered with
 * `nsenter --net=/run/netns/X` only (never `ip netns exec`, which remounts /sys). This kernel has
 * `nft` is Debian's (node-agent's NFT: under npx, node_modules/.bin/nft is @vercel/nft). This kernel has
 * no netem: there is no fixed delay; `slowLink` limits a host's link rate with tbf instead, which
 * delays packets only when they queue behind the limit.
 */
import { existsSync } from 'node:fs';
import { readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '@swarmd/common';
import { NFT } from '@swarmd/node-agent';
import type { LocalHost } from '@swarmd/cli/local/state';
import type { LocalCluster, Scope } from '../cluster/local-cluster.js';

export type Undo = () => Promise<void>;

/** The table name every fault table starts with (the orphan check refuses any left over). */
export const FAULT_TABLE_PREFIX = 'e2e_fault_';

/**
 * Runs a program inside a host's network namespace: the one its swarmd runs in when it runs
 * (`/proc/PID/ns/net`), else `/run/netns/X`.
 */
export function inNetns(h: Pick<LocalHost, 'netns'> & { pid?: number }, argv: readonly string[], input?: string) {
  const ns = h.pid && existsSync(`/proc/${h.pid}/ns/net`) ? `/proc/${h.pid}/ns/net` : `/run/netns/${h.netns}`;
  return run('nsenter', [`--net=${ns}`, '--', ...argv], input !== undefined ? { input } : {});
}

let tables = 0;

export class Faults {
  constructor(
    private readonly scope: Scope,
    private readonly c: LocalCluster,
  ) {}

  /** Registers `undo` at teardown; returns it made idempotent. */
  private undoable(what: string, undo: Undo): Undo {
    let done = false;
    const once: Undo = async () => {
      if (done) return;
      done = true;
      try {
        await undo();
      } catch (e) {
        throw new Error(`undoing ${what}: ${(e as Error).message}`, { cause: e });
      }
    };
    this.scope.teardown(() => once().catch((e: Error) => this.scope.log(e.message)));
    return once;
  }

  private async live(host: string): Promise<LocalHost & { pid: number }> {
    const h = await this.c.host(host);
    if (!h.pid) throw new Error(`host ${host} has no swarmd pid in cluster.json`);
    return h as LocalHost & { pid: number };
  }

  /** `local start HOST`, failing with its output. */
  private async start(host: string): Promise<void> {
    const r = await this.c.ctl('local', 'start', '--name', this.c.name, host, '--timeout', '120');
    if (r.code !== 0) throw new Error(`local start ${host}: ${r.stderr}${r.stdout}`);
  }

  /** kill -9 of a host's swarmd alone (its containers keep running); undo: `local start`. */
  async killSwarmd(host: string): Promise<Undo> {
    const h = await this.live(host);
    process.kill(h.pid, 'SIGKILL');
    await waitExit(h.pid);
    return this.undoable(`kill -9 of ${host}'s swarmd`, () => this.start(host));
  }

  /** The whole host dies as on a power loss (`local stop --kill`: swarmd and its containers); undo: `local start`. */
  async killHost(host: string): Promise<Undo> {
    const r = await this.c.ctl('local', 'stop', '--name', this.c.name, '--kill', host);
    if (r.code !== 0) throw new Error(`local stop --kill ${host}: ${r.stderr}${r.stdout}`);
    return this.undoable(`kill of host ${host}`, () => this.start(host));
  }

  /** SIGSTOP of a host's swarmd (it keeps its sockets open and answers nothing); undo: SIGCONT. */
  async pause(host: string): Promise<Undo> {
    const h = await this.live(host);
    process.kill(h.pid, 'SIGSTOP');
    return this.undoable(`SIGSTOP of ${host}`, async () => {
      try {
        process.kill(h.pid, 'SIGCONT');
      } catch {
        /* gone meanwhile */
      }
    });
  }

  /** Loads an nft table into each host's netns; undo deletes it from each. */
  private async nftTable(what: string, hosts: readonly LocalHost[], body: (h: LocalHost) => string): Promise<Undo> {
    const table = `${FAULT_TABLE_PREFIX}${process.pid}_${++tables}`;
    const loaded: LocalHost[] = [];
    const undo = this.undoable(what, async () => {
      for (const h of loaded) await inNetns(h, [NFT, 'delete', 'table', 'inet', table], '').catch(() => undefined);
    });
    try {
      for (const h of hosts) {
        await inNetns(h, [NFT, '-f', '-'], `table inet ${table} {\n${body(h)}\n}\n`);
        loaded.push(h);
      }
    } catch (e) {
      await undo();
      throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
    }
    return undo;
  }

  /**
   * Cuts `side` off from the other hosts: in each of their netns every packet to or from an
   * underlay address of a host on the other side is dropped (both ways, so applying it on one
   * side is enough). The registry on the gateway stays reachable.
   */
  async partition(side: readonly string[]): Promise<Undo> {
    const all = await this.c.hosts();
    const inside = all.filter((h) => side.includes(h.name));
    if (inside.length !== side.length) throw new Error(`partition: unknown host among ${side.join(', ')} (hosts: ${all.map((h) => h.name).join(', ')})`);
    const others = all.filter((h) => !side.includes(h.name)).map((h) => h.addr);
    if (!others.length) throw new Error(`partition: ${side.join(', ')} is every host: nothing to cut them from`);
    const set = `{ ${others.join(', ')} }`;
    return this.nftTable(`partition of ${side.join(', ')}`, inside, () =>
      [
        '  chain in { type filter hook input priority -300; policy accept;',
        `    ip saddr ${set} drop`,
        '  }',
        '  chain out { type filter hook output priority -300; policy accept;',
        `    ip daddr ${set} drop`,
        '  }',
      ].join('\n'),
    );
  }

  /**
   * Drops `percent` % of the packets each host receives from the underlay (eth0), chosen at
   * random (`numgen random mod 100`): every packet between hosts crosses one receiver, so each
   * is lost with that probability.
   */
  async loss(percent: number, hosts?: readonly string[]): Promise<Undo> {
    if (!Number.isInteger(percent) || percent < 1 || percent > 100) throw new Error(`loss: ${percent}: a whole percentage 1-100`);
    const targets = (await this.c.hosts()).filter((h) => !hosts || hosts.includes(h.name));
    return this.nftTable(`${percent}% loss on ${hosts ? hosts.join(', ') : 'every host'}`, targets, () =>
      ['  chain in { type filter hook input priority -300; policy accept;', `    iifname "eth0" numgen random mod 100 < ${percent} drop`, '  }'].join('\n'),
    );
  }

  /**
   * A slow link: the host's underlay veth (both ends) limited to `kbit` kbit/s by tbf, with up
   * to `latencyMs` of queue. No fixed delay exists without netem; this delays only what queues.
   */
  async slowLink(host: string, kbit: number, latencyMs = 200): Promise<Undo> {
    const h = await this.c.host(host);
    const tbf = ['root', 'tbf', 'rate', `${kbit}kbit`, 'burst', '16kbit', 'latency', `${latencyMs}ms`];
    await run('tc', ['qdisc', 'replace', 'dev', h.veth, ...tbf]);
    const undo = this.undoable(`slow link of ${host}`, async () => {
      await run('tc', ['qdisc', 'del', 'dev', h.veth, 'root']).catch(() => undefined);
      await inNetns(h, ['tc', 'qdisc', 'del', 'dev', 'eth0', 'root']).catch(() => undefined);
    });
    await inNetns(h, ['tc', 'qdisc', 'replace', 'dev', 'eth0', ...tbf]).catch(async (e: Error) => {
      await undo();
      throw e;
    });
    return undo;
  }

  /**
   * Fills a host's state dir, which must be a tmpfs of its own (startLocalCluster's
   * `tmpfsStateDirs`), with one file up to the last byte; undo removes the file.
   */
  async fillDisk(host: string): Promise<Undo> {
    const h = await this.c.host(host);
    const mounts = await run('findmnt', ['-n', '-o', 'FSTYPE', '--mountpoint', h.stateDir]).catch(() => ({ stdout: '' }));
    if (mounts.stdout.trim() !== 'tmpfs') throw new Error(`fillDisk: ${h.stateDir} is not a tmpfs of its own: start the cluster with tmpfsStateDirs: ['${host}']`);
    const file = join(h.stateDir, 'e2e-disk-filler');
    const undo = this.undoable(`full disk on ${host}`, () => run('rm', ['-f', file]).then(() => undefined));
    const s = await statfs(h.stateDir);
    // fallocate takes the free blocks at once; dd tops up whatever is left (it ends on ENOSPC).
    await run('fallocate', ['-l', String(s.bavail * s.bsize), file]).catch(() => undefined);
    await run('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k', 'oflag=append', 'conv=notrunc'], { okCodes: [0, 1] }).catch(() => undefined);
    const left = await statfs(h.stateDir);
    if (left.bavail > 16) {
      await undo();
      throw new Error(`fillDisk: ${h.stateDir} still has ${left.bavail * left.bsize} bytes free after filling`);
    }
    return undo;
  }
}

/**
 * Waits until `pid` is gone: reaped by its parent, which may be this process (swarmctl in-process
 * spawned it), whose event loop must turn for that; a zombie left after 5 s counts as gone.
 */
async function waitExit(pid: number): Promise<void> {
  let zombie = 0;
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (!st) return;
    if (/^\d+ \(.*\) [ZX] /s.test(st) && ++zombie > 100) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`pid ${pid} still runs 10 s after SIGKILL`);
}
