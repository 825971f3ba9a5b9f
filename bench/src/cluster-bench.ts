/**
 * The local cluster with real swarmd processes on netns hosts (`swarmctl local up`):
 *
 * 1. `local up --managers 3 --workers 2` to every node READY (local up's own completion), then
 *    `local down`; BENCH_UP_RUNS times (5). The last cluster stays up for 2 and 3.
 * 2. Idle RSS: after BENCH_SETTLE_MS (10 s), VmRSS of every swarmd.
 * 3. Leader failover: kill -9 the leader's swarmd, then time until the first accepted write
 *    (Control.UpdateNode of a worker's labels, in-process gRPC over the surviving managers' unix
 *    control sockets, one retry loop per socket, every 20 ms). The killed manager is restarted
 *    (`swarmd run` in its netns) and the cluster settles between runs; BENCH_FAILOVER_RUNS (5).
 *    The new leader's "raft: leader changed" log line splits the time into election and the rest.
 *
 *   npm run bench:cluster            (root; needs packages/cli and packages/swarmd built)
 *
 * Everything runs under its own SWARMD_LOCAL_ROOT (a temp dir), SWARMCTL_CONTEXT and subnet
 * (BENCH_SUBNET, 10.252.7.0/24); `local down` runs at the end, on error and on SIGINT/SIGTERM.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import { ManagerStatus_Reachability, NodeState, type Node, type NodeSpec } from '@swarmd/proto';
import { controlSock as sock, Ctl, LocalCluster, max, now, p50, rssMiB, runBench, SWARMD, until, type Host, type State } from './lib/local-cluster.js';

const UP_RUNS = Number(process.env.BENCH_UP_RUNS ?? 5);
const FAILOVER_RUNS = Number(process.env.BENCH_FAILOVER_RUNS ?? 5);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 10_000);
const SUBNET = process.env.BENCH_SUBNET ?? '10.252.7.0/24';
const NAME = process.env.BENCH_NAME ?? 'cbench';
const RETRY_MS = 20;

let cluster: LocalCluster | undefined;
const theCluster = (): LocalCluster => cluster!;

// ---- 1. local up -----------------------------------------------------------------------------

async function timeUp(): Promise<number> {
  const t0 = now();
  const st = await theCluster().up(3, 2);
  const t = now() - t0;
  // local up returns once every node is READY; check it from outside too
  const c = new Ctl(sock(st.hosts[0]));
  try {
    const nodes = await c.listNodes();
    const ready = nodes.filter((n) => n.status?.state === NodeState.NODE_STATE_READY).length;
    if (ready !== 5) throw new Error(`local up returned with ${ready}/5 nodes READY`);
  } finally {
    c.close();
  }
  return t / 1000;
}

// ---- 3. failover -----------------------------------------------------------------------------

/** Every manager reachable, exactly one leader, every node READY (as a manager's socket sees it). */
async function settled(st: State): Promise<Node[]> {
  const managers = st.hosts.filter((h) => h.role === 'manager');
  return until('the cluster to settle (5 nodes READY, 3 managers reachable, one leader)', 120_000, async () => {
    for (const m of managers) {
      const c = new Ctl(sock(m));
      try {
        const nodes = await c.listNodes(1_000);
        const ok =
          nodes.length === 5 &&
          nodes.every((n) => n.status?.state === NodeState.NODE_STATE_READY) &&
          nodes.filter((n) => n.managerStatus?.leader).length === 1 &&
          nodes.filter((n) => n.managerStatus?.reachability === ManagerStatus_Reachability.REACHABLE || n.managerStatus?.leader).length === 3;
        if (ok) return nodes;
      } catch {
        /* try the next socket */
      } finally {
        c.close();
      }
    }
    return undefined;
  });
}

async function restart(st: State, h: Host): Promise<void> {
  const fh = await open(h.log, 'a');
  try {
    const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, '--', process.execPath, SWARMD, 'run', '--state-dir', h.stateDir], {
      detached: true,
      stdio: ['ignore', fh.fd, fh.fd],
      env: theCluster().env,
    });
    h.pid = await new Promise<number>((res, rej) => {
      child.once('error', rej);
      child.once('spawn', () => res(child.pid!));
    });
    child.unref();
  } finally {
    await fh.close();
  }
  // keep cluster.json's pids true (local down does not rely on them, but we read them)
  const file = join(st.dir, 'cluster.json');
  const raw = JSON.parse(await readFile(file, 'utf8')) as State;
  for (const x of raw.hosts) if (x.name === h.name) x.pid = h.pid;
  await writeFile(file, JSON.stringify(raw, null, 2) + '\n');
}

/** The first log line after `sinceMs` (wall clock) in these hosts' logs that `match` accepts. */
async function firstLogged(hosts: Host[], sinceMs: number, message: string, match: (j: Record<string, unknown>) => boolean = () => true): Promise<{ host: string; at: number } | undefined> {
  let best: { host: string; at: number } | undefined;
  for (const h of hosts) {
    const text = await readFile(h.log, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.includes(message)) continue;
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        const at = typeof j.timestamp === 'string' ? Date.parse(j.timestamp) : NaN;
        if (j.message === message && match(j) && at >= sinceMs && (!best || at < best.at)) best = { host: h.name, at };
      } catch {
        /* not a JSON line */
      }
    }
  }
  return best;
}

interface Failover {
  ms: number;
  via: string;
  tries: number;
  electedMs?: number;
  newLeader?: string;
  /** A survivor noticed its stream to the leader broke and expired the lease early (raft-ts peerLost). */
  leaseLostMs?: number;
  leaseLostBy: string;
}

async function failoverOnce(st: State, run: number): Promise<{ f: Failover; killed: Host }> {
  const nodes = await settled(st);
  const leaderNode = nodes.find((n) => n.managerStatus?.leader)!;
  const leader = st.hosts.find((h) => h.hostname === leaderNode.description?.hostname);
  if (!leader?.pid) throw new Error(`leader ${leaderNode.description?.hostname} not found in cluster.json`);
  const target = nodes.find((n) => n.description?.hostname === st.hosts.find((h) => h.name === 'w1')!.hostname)!;
  const survivors = st.hosts.filter((h) => h.role === 'manager' && h !== leader);
  const clients = survivors.map((h) => ({ h, c: new Ctl(sock(h)) }));
  try {
    // connect the channels before the kill (a read through each)
    for (const { c } of clients) await c.listNodes();

    let done = false;
    let tries = 0;
    const wallKill = Date.now();
    const t0 = now();
    process.kill(leader.pid, 'SIGKILL');
    const loop = async ({ h, c }: { h: Host; c: Ctl }): Promise<{ at: number; via: string }> => {
      while (!done) {
        tries++;
        try {
          const cur = await c.getNode(target.id, 1_000);
          const spec: NodeSpec = {
            ...cur.spec!,
            annotations: { name: cur.spec?.annotations?.name ?? '', labels: { ...cur.spec?.annotations?.labels, bench: String(run) } },
          };
          await c.updateNode(target.id, cur.meta?.version ?? 0, spec, 1_000);
          const at = now();
          done = true;
          return { at, via: h.name };
        } catch {
          await sleep(RETRY_MS);
        }
      }
      return { at: Infinity, via: h.name };
    };
    const first = await Promise.race(clients.map(loop));
    done = true;
    await sleep(200); // the logs' last lines
    const elected = await firstLogged(survivors, wallKill - 5, 'raft: leader changed', (j) => j.role === 'leader');
    const lostMsg = 'raft: connection to the leader lost; expiring its lease early';
    const lost = await firstLogged(survivors, wallKill - 5, lostMsg);
    const lostEach = await Promise.all(survivors.map(async (h) => ({ h: h.name, l: await firstLogged([h], wallKill - 5, lostMsg) })));
    return {
      killed: leader,
      f: {
        ms: first.at - t0,
        via: first.via,
        tries,
        ...(elected ? { electedMs: elected.at - wallKill, newLeader: elected.host } : {}),
        ...(lost ? { leaseLostMs: lost.at - wallKill } : {}),
        leaseLostBy: lostEach.map((x) => `${x.h} ${x.l ? `${x.l.at - wallKill} ms` : 'no'}`).join(', '),
      },
    };
  } finally {
    for (const { c } of clients) c.close();
  }
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the cluster bench makes network namespaces: run it as root');
  cluster = new LocalCluster(await mkdtemp(join(tmpdir(), 'swarm-cluster-bench-')), NAME, SUBNET);
  console.log(`cluster bench: ${NAME} on ${SUBNET}, state under ${cluster.root}`);

  // 1. local up
  const ups: number[] = [];
  for (let i = 1; i <= UP_RUNS; i++) {
    ups.push(await timeUp());
    console.log(`  local up #${i}: ${ups[i - 1].toFixed(2)} s`);
    if (i < UP_RUNS) await cluster.down();
  }
  console.log(`local up to 5 nodes ready: p50 ${p50(ups).toFixed(2)} s, max ${max(ups).toFixed(2)} s  (runs: ${ups.map((x) => x.toFixed(2)).join(', ')})`);

  // 2. idle RSS
  const st = await cluster.state();
  await sleep(SETTLE_MS);
  await settled(st);
  const mRss = await Promise.all(st.hosts.filter((h) => h.role === 'manager').map((h) => rssMiB(h.pid)));
  const wRss = await Promise.all(st.hosts.filter((h) => h.role === 'worker').map((h) => rssMiB(h.pid)));
  const f1 = (x: number) => x.toFixed(1);
  console.log(`idle RSS (${SETTLE_MS / 1000} s after up): managers ${mRss.map(f1).join('/')} MiB (max ${f1(max(mRss))}), workers ${wRss.map(f1).join('/')} MiB`);

  // 3. failover
  const fs: Failover[] = [];
  for (let i = 1; i <= FAILOVER_RUNS; i++) {
    const { f, killed } = await failoverOnce(st, i);
    fs.push(f);
    const el =
      (f.electedMs !== undefined ? `, ${f.newLeader} leader after ${f.electedMs} ms` : '') +
      `; early lease expiry: ${f.leaseLostBy}`;
    console.log(`  failover #${i}: killed ${killed.name}, first accepted write via ${f.via} after ${f.ms.toFixed(0)} ms (${f.tries} tries${el}; log times)`);
    await restart(st, killed);
  }
  await settled(st);
  const ms = fs.map((f) => f.ms);
  console.log(`leader failover (kill -9 → first accepted write): p50 ${p50(ms).toFixed(0)} ms, max ${max(ms).toFixed(0)} ms  (runs: ${ms.map((x) => x.toFixed(0)).join(', ')})`);
  const el = fs.filter((f) => f.electedMs !== undefined).map((f) => f.electedMs!);
  if (el.length) console.log(`  of which kill -9 → new leader elected (log timestamps): p50 ${p50(el)} ms, max ${max(el)} ms`);
  console.log(`  early lease expiry (stream to the dead leader broke) in ${fs.filter((f) => f.leaseLostMs !== undefined).length}/${fs.length} runs`);
}

async function cleanup(): Promise<void> {
  if (!cluster) return;
  const keep = process.env.BENCH_KEEP_LOGS;
  if (keep) await run('sh', ['-c', `mkdir -p '${keep}' && cp '${cluster.dir}'/*.log '${keep}'/`]).catch(() => undefined);
  await cluster.down();
  await rm(cluster.root, { recursive: true, force: true });
}

await runBench('cluster bench', main, cleanup);
