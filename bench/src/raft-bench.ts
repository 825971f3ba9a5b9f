/**
 * bench:raft — raft-ts (3 raft-kv OS processes, fsync on) against etcd (3 etcd processes) on
 * loopback, in the same run: 1, 16 and 64 concurrent clients write 256-byte values for a fixed
 * time; then kill -9 of the raft-ts leader under load, 5 times, timing the first accepted write.
 *
 *   npm run bench:raft        (BENCH_SECONDS=5 per load level, BENCH_FAILOVERS=5)
 *
 * raft-ts runs with the library's defaults (tick 50 ms, heartbeat 1 tick, election 10 ticks,
 * randomized to [500, 1000) ms); etcd is given the same: heartbeat 50 ms, election timeout 500 ms.
 * Every process started here is killed at the end, even on error. BENCH_NODE_ARGS adds node
 * flags to the raft-kv processes (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { Etcd3 } from 'etcd3';
import { KvClusterClient } from 'raft-ts/kv/kv-client';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const RAFT_KV = join(ROOT, 'packages', 'raft-ts', 'dist', 'bin', 'raft-kv.js');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const FAILOVERS = Number(process.env.BENCH_FAILOVERS ?? 5);
const LEVELS = (process.env.BENCH_CLIENTS ?? '1,16,64').split(',').map(Number);
/** etcd's heartbeat interval; its election timeout is 10 of them (raft-ts's defaults). */
const TICK_MS = 50;
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const VALUE = Buffer.alloc(256, 'v');
const KEYS = 10_000;

const children = new Set<ChildProcess>();
const dirs: string[] = [];

function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function start(cmd: string, args: string[], label: string): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const tail: string[] = [];
  c.stderr.setEncoding('utf8');
  c.stderr.on('data', (d: string) => {
    tail.push(d);
    if (tail.length > 50) tail.shift();
  });
  c.on('exit', (code, signal) => {
    children.delete(c);
    if (code && code !== 0) process.stderr.write(`bench: ${label} exited with ${code}:\n${tail.join('').slice(-2000)}\n`);
    void signal;
  });
  children.add(c);
  return c;
}

function stopProc(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    c.once('exit', () => resolve());
    c.kill('SIGKILL');
  });
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Result {
  clients: number;
  writes: number;
  perSec: number;
  p50: number;
  p99: number;
  errors: number;
}

/** Runs `clients` loops of put() for SECONDS; latencies in ms. */
async function load(clients: number, put: (key: string) => Promise<unknown>): Promise<Result> {
  const lat: number[] = [];
  let errors = 0;
  const until = Date.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, w) => {
      for (let i = 0; Date.now() < until; i++) {
        const key = `k${(w * 7919 + i) % KEYS}`;
        const s = performance.now();
        try {
          await put(key);
          lat.push(performance.now() - s);
        } catch {
          errors++;
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { clients, writes: lat.length, perSec: lat.length / secs, p50: pct(lat, 50), p99: pct(lat, 99), errors };
}

function line(system: string, r: Result): string {
  return `${system.padEnd(8)} clients=${String(r.clients).padStart(2)}  writes/s=${r.perSec.toFixed(0).padStart(6)}  p50=${r.p50.toFixed(1).padStart(6)} ms  p99=${r.p99.toFixed(1).padStart(6)} ms  errors=${r.errors}`;
}

// ---------------------------------------------------------------- raft-ts

interface RaftCluster {
  addrs: Map<number, string>;
  procs: Map<number, ChildProcess>;
  root: string;
  start(id: number): void;
}

async function raftCluster(): Promise<RaftCluster> {
  const root = await mkdtemp(join(tmpdir(), 'bench-raft-'));
  dirs.push(root);
  const addrs = new Map<number, string>();
  for (const id of [1, 2, 3]) addrs.set(id, `127.0.0.1:${await freePort()}`);
  const peers = [...addrs].map(([id, a]) => `${id}=${a}`).join(',');
  const procs = new Map<number, ChildProcess>();
  const c: RaftCluster = {
    addrs,
    procs,
    root,
    start(id: number) {
      procs.set(
        id,
        start(
          process.execPath,
          [...NODE_ARGS, RAFT_KV, '--id', String(id), '--listen', addrs.get(id)!, '--peers', peers, '--data-dir', join(root, `m${id}`), '--log-level', 'warn'],
          `raft-kv ${id}`,
        ),
      );
    },
  };
  for (const id of addrs.keys()) c.start(id);
  return c;
}

async function raftLeader(c: RaftCluster, client: KvClusterClient, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const [id, addr] of c.addrs) {
      if (!c.procs.has(id)) continue;
      try {
        const st = await client.status(addr, 300);
        if (st.role === 'leader') return id;
      } catch {
        // starting
      }
    }
    await sleep(50);
  }
  throw new Error('raft-ts: no leader');
}

async function benchRaft(): Promise<Result[]> {
  const c = await raftCluster();
  try {
    const probe = new KvClusterClient([...c.addrs.values()]);
    const leader = await raftLeader(c, probe);
    probe.close();
    // Clients talk to the leader (a follower answers with a hint; the client follows it).
    const client = new KvClusterClient([c.addrs.get(leader)!, ...[...c.addrs].filter(([id]) => id !== leader).map(([, a]) => a)]);
    for (let i = 0; i < 200; i++) await client.put(`warm${i}`, VALUE);
    const out: Result[] = [];
    for (const n of LEVELS) {
      const r = await load(n, (k) => client.put(k, VALUE));
      console.log(line('raft-ts', r));
      out.push(r);
    }
    client.close();
    return out;
  } finally {
    // With BENCH_NODE_ARGS (e.g. --cpu-prof), let the members exit cleanly so profiles are written.
    if (NODE_ARGS.length) await Promise.all([...c.procs.values()].map((p) => termProc(p)));
    await Promise.all([...c.procs.values()].map(stopProc));
  }
}

function termProc(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 5000);
    c.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    c.kill('SIGTERM');
  });
}

async function benchFailover(): Promise<number[]> {
  const c = await raftCluster();
  const times: number[] = [];
  try {
    const client = new KvClusterClient([...c.addrs.values()], { deadlineMs: 10_000, attemptMs: 500 });
    for (let round = 0; round < FAILOVERS; round++) {
      const leader = await raftLeader(c, client);
      // Load: 16 writers; record when each write is acknowledged.
      let stop = false;
      let lastAck = 0;
      let acks = 0;
      const writers = Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          try {
            await client.put(`f${w}-${i % 1000}`, VALUE);
            lastAck = Date.now();
            acks++;
          } catch {
            // not acknowledged
          }
        }
      });
      await sleep(1500);
      const ackedBefore = acks;
      const killedAt = Date.now();
      await stopProc(c.procs.get(leader)!);
      c.procs.delete(leader);
      const killAckMark = acks;
      while (acks === killAckMark && Date.now() - killedAt < 15_000) await sleep(1);
      // Acks that completed right at the kill (in flight before it) are not a failover write.
      while (lastAck - killedAt < 0 && Date.now() - killedAt < 15_000) await sleep(1);
      const ms = lastAck - killedAt;
      times.push(ms);
      console.log(`failover ${round + 1}: killed leader ${leader} (after ${ackedBefore} writes); first accepted write after ${ms} ms`);
      stop = true;
      await Promise.all(writers);
      c.start(leader);
      await sleep(2500);
    }
    client.close();
  } finally {
    await Promise.all([...c.procs.values()].map(stopProc));
  }
  return times;
}

// ---------------------------------------------------------------- etcd

async function benchEtcd(): Promise<Result[]> {
  const root = await mkdtemp(join(tmpdir(), 'bench-etcd-'));
  dirs.push(root);
  const names = ['e1', 'e2', 'e3'];
  const client: string[] = [];
  const peer: string[] = [];
  for (let i = 0; i < 3; i++) {
    client.push(`http://127.0.0.1:${await freePort()}`);
    peer.push(`http://127.0.0.1:${await freePort()}`);
  }
  const initial = names.map((n, i) => `${n}=${peer[i]}`).join(',');
  const procs = names.map((n, i) =>
    start(
      'etcd',
      [
        '--name', n,
        '--data-dir', join(root, n),
        '--listen-client-urls', client[i],
        '--advertise-client-urls', client[i],
        '--listen-peer-urls', peer[i],
        '--initial-advertise-peer-urls', peer[i],
        '--initial-cluster', initial,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', 'bench',
        '--heartbeat-interval', String(TICK_MS),
        '--election-timeout', String(TICK_MS * 10),
        '--log-level', 'error',
      ],
      `etcd ${n}`,
    ),
  );
  try {
    // Find the leader and talk to it only, as the raft-ts clients do.
    let leaderUrl = '';
    const deadline = Date.now() + 20_000;
    while (!leaderUrl && Date.now() < deadline) {
      for (const url of client) {
        const c = new Etcd3({ hosts: url, dialTimeout: 500 });
        try {
          const st = await c.maintenance.status();
          if (st.header.member_id === st.leader) leaderUrl = url;
        } catch {
          // starting
        } finally {
          c.close();
        }
        if (leaderUrl) break;
      }
      if (!leaderUrl) await sleep(100);
    }
    if (!leaderUrl) throw new Error('etcd: no leader');
    const etcd = new Etcd3({ hosts: leaderUrl });
    for (let i = 0; i < 200; i++) await etcd.put(`warm${i}`).value(VALUE);
    const out: Result[] = [];
    for (const n of LEVELS) {
      const r = await load(n, (k) => etcd.put(k).value(VALUE).exec());
      console.log(line('etcd', r));
      out.push(r);
    }
    etcd.close();
    return out;
  } finally {
    await Promise.all(procs.map(stopProc));
  }
}

async function main(): Promise<void> {
  if (!existsSync(RAFT_KV)) throw new Error(`bench: ${RAFT_KV} missing; build first (npx tsc -b packages/raft-ts)`);
  const etcdVersion = execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  console.log(`bench:raft — 3 members on loopback, fsync on, 256-byte values, ${SECONDS} s per level; raft-ts vs ${etcdVersion}`);
  const raft = await benchRaft();
  const etcd = await benchEtcd();
  const at = (rs: Result[], n: number) => rs.find((r) => r.clients === n) ?? rs[rs.length - 1];
  const top = LEVELS[LEVELS.length - 1];
  const ratio = at(raft, top).perSec / at(etcd, top).perSec;
  console.log(`raft-ts/etcd writes ratio: ${ratio.toFixed(2)}`);
  if (FAILOVERS > 0) {
    const times = await benchFailover();
    const sorted = [...times].sort((a, b) => a - b);
    console.log(`failover times: ${times.join(', ')} ms`);
    console.log(`failover p50: ${pct(sorted, 50)} ms`);
  }
  console.log(`raft-ts/etcd writes ratio: ${ratio.toFixed(2)}`);
}

main()
  .catch((e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    killAll();
    await sleep(200);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    process.exit();
  });
